"""Optuna search through Hydra: hydra-optuna-sweeper's sweeper with pruning and resumable studies.

`python -m posevit.sweep --multirun hparams_search=optuna` (conf/hparams_search/optuna.yaml) selects
`hydra/sweeper=posevit_optuna` (hydra_plugins/posevit_optuna_sweeper), which runs `PruningOptunaSweeperImpl`.
It keeps the stock sweeper's config, search-space parsing and trial set-up, and changes its `sweep` where the
stock one cannot do what a search with pruning needs:

- a trial whose job raised `optuna.TrialPruned` is told PRUNED (the stock loop tells every exception FAIL);
- `n_trials` counts the study's completed and pruned trials, so a killed search re-run with the same study
  and storage tops the study up to `n_trials` (the stock loop runs `n_trials` more each time), and trials a
  killed sweeper left RUNNING are marked FAIL (interrupted) instead of staying RUNNING forever;
- each job is told its trial number (`hydra.sweeper.trial=N`): Hydra hands a job only its overrides, not the
  trial, so the job opens the study from the same storage and reports val/acc to that trial each epoch through
  Optuna's Lightning pruning callback, with the configured pruner;
- a new study first runs the composed config's own values of the searched keys (`baseline`), so the search
  is compared with the default setting on the same footing.

One sweeper per study at a time (trials left RUNNING are taken for a killed run's); the jobs may be anywhere
that reaches the storage (joblib processes, SLURM jobs via submitit on a shared file system or database).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import optuna
import pytorch_lightning as pl
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.integration import PyTorchLightningPruningCallback
from optuna.trial import TrialState

from posevit.core.entrypoint import write_json
from posevit.core.errors import ConfigError, PosevitError
from posevit.sweep.point import RUN_FILE, run_point

log = logging.getLogger(__name__)
MONITOR = "val/acc"  # what the trials report each epoch and the study maximises (the best epoch's)
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # the trials n_trials counts
BASELINE_ATTR = "posevit:baseline"  # user attribute of the trial that ran the config's own values


class PruningOptunaSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *, baseline: bool, **stock: Any) -> None:
        super().__init__(**stock)
        self.baseline = baseline

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None  # set by setup(), which Hydra calls first
        self._process_searchspace_config()
        space, fixed = create_params_from_overrides([*self._parse_sweeper_params_config(), *arguments])
        space = {**(self.search_space_distributions or {}), **space}
        for name in fixed:
            space.pop(name, None)
        directions = self._get_directions()
        if len(directions) != 1:
            raise ConfigError("hydra.sweeper.direction: the posevit search optimises one value (val/acc)")
        make_sqlite_folder(self.storage)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            direction=directions[0],
            load_if_exists=True,
        )
        fail_interrupted_trials(study)
        enqueued = self.baseline and not study.trials and enqueue_baseline(study, space, self.config)
        done = len(study.get_trials(deepcopy=False, states=COUNTED))
        log.info("study %s in %s: %d of %d trials done", study.study_name, self.storage, done, self.n_trials)
        while done < self.n_trials:
            trials = [study.ask() for _ in range(min(self.n_jobs, self.n_trials - done))]
            if enqueued and trials[0].number == 0:
                trials[0].set_user_attr(BASELINE_ATTR, True)
            overrides = [
                (*trial_overrides, f"hydra.sweeper.trial={trial.number}")
                for trial, trial_overrides in zip(trials, self._configure_trials(trials, space, fixed), strict=True)
            ]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            failed = [ret for trial, ret in zip(trials, returns, strict=True) if not tell(study, trial, ret)]
            if len(failed) / len(returns) > self.max_failure_rate:
                log.error(
                    "%d of %d trials failed (max_failure_rate=%s)", len(failed), len(returns), self.max_failure_rate
                )
                for ret in failed:
                    ret.return_value  # noqa: B018  (raises a failed job's own exception, with its traceback)
                raise ValueError(f"trials returned no val accuracy: {[ret.return_value for ret in failed]}")
            done = len(study.get_trials(deepcopy=False, states=COUNTED))
        save_results(study, Path(str(self.config.hydra.sweep.dir)))


def tell(study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> bool:
    """Record a job's outcome on its trial: COMPLETE with its value, PRUNED, or FAIL (returns False)."""
    # JobReturn.return_value re-raises a failed job's exception (and prints that it failed): a pruned job
    # did not fail, so its exception is read from the field.
    outcome = ret._return_value if ret.status == JobStatus.FAILED else ret.return_value
    if isinstance(outcome, optuna.TrialPruned):
        study.tell(trial, state=TrialState.PRUNED)
        log.info("trial %d pruned: %s", trial.number, outcome)
        return True
    if isinstance(outcome, BaseException) or not isinstance(outcome, int | float) or math.isnan(outcome):
        study.tell(trial, state=TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, outcome)
        return False
    study.tell(trial, float(outcome), state=TrialState.COMPLETE)
    return True


def make_sqlite_folder(storage: Any) -> None:
    """SQLite creates the database file, not its folder (the sweep directory does not exist yet)."""
    if isinstance(storage, str) and storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def fail_interrupted_trials(study: optuna.Study) -> None:
    """Trials a killed sweeper left RUNNING are FAIL (no job of theirs runs any more); n_trials does not count
    them, so the resumed search runs their share again."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        log.warning("trial %d was left running by an interrupted search: marked failed", trial.number)


def enqueue_baseline(study: optuna.Study, space: dict[str, BaseDistribution], config: DictConfig) -> bool:
    """Queue the composed config's own values of the searched keys as the first trial (when each lies in its
    range), so the study holds the default setting's val accuracy, measured the same way as the others'."""
    params = {}
    for name, distribution in space.items():
        value = OmegaConf.select(config, name)
        if value is None and isinstance(distribution, CategoricalDistribution):
            value = "null"  # how Hydra's choice() keeps null
        try:
            inside = distribution._contains(distribution.to_internal_repr(value))
        except (TypeError, ValueError):
            inside = False
        if not inside:
            log.warning("no baseline trial: %s=%s is outside its search range %s", name, value, distribution)
            return False
        params[name] = value
    study.enqueue_trial(params)
    return True


def save_results(study: optuna.Study, sweep_dir: Path) -> None:
    """optimization_results.yaml, as the stock sweeper writes it (best params and value)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        log.warning("no trial of study %s completed: no best trial", study.study_name)
        return
    best = study.best_trial
    log.info("best trial %d: %s=%.4f with %s", best.number, MONITOR, best.value, best.params)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


class TrialPruning(PyTorchLightningPruningCallback):
    """Optuna's Lightning pruning callback (optuna 2.10's, which subclasses this project's `pytorch_lightning`
    Callback), minus its one gap: it would report Lightning's sanity-check validation as epoch 0, and Optuna keeps
    the first value reported for a step, so the real epoch 0 would be dropped."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            super().on_validation_end(trainer, pl_module)


def job_trial(sweeper: DictConfig) -> optuna.Trial:
    """The trial this job runs, opened from the sweeper's storage with the configured pruner."""
    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") else None
    study = optuna.load_study(study_name=sweeper.study_name, storage=sweeper.storage, pruner=pruner)
    # Optuna has no public way to reopen a running trial by number: this is what study.ask() does inside.
    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, int(sweeper.trial))
    return optuna.trial.Trial(study, trial_id)


def run_trial(raw: DictConfig, run_dir: Path, overrides: list[str], sweeper: DictConfig) -> float:
    """Train one trial with the pruning callback, no test evaluation; returns the best epoch's val accuracy.
    A pruned trial raises optuna.TrialPruned and a bad config its PosevitError, for the sweeper to record."""
    trial = job_trial(sweeper)
    pruning = TrialPruning(trial, monitor=MONITOR)
    try:
        record = run_point(raw, run_dir, overrides, callbacks=[pruning], test=False)
    except optuna.TrialPruned as pruned:
        write_json(run_dir / RUN_FILE, {"overrides": overrides, "trial": trial.number, "pruned": str(pruned)})
        log.info("trial %d: %s", trial.number, pruned)
        raise
    except PosevitError as exc:
        write_json(run_dir / RUN_FILE, {"overrides": overrides, "trial": trial.number, "error": str(exc)})
        log.error("trial %d: %s", trial.number, exc)
        raise
    if not record:  # a non-zero rank of a distributed run: rank 0 reports
        return math.nan
    value = record["train"]["best_val_acc"]
    write_json(run_dir / RUN_FILE, {**record, "trial": trial.number})
    log.info("trial %d: best %s %.4f", trial.number, MONITOR, value)
    return value
