"""Optuna search: the sweeper's bookkeeping and the study report on real SQLite studies (in-process, no
training), then a real search on the smoke config: pruning ends a trial early, a stopped search resumes, and the
report re-runs the best setting on the test split."""

from __future__ import annotations

import json
import logging
import math
import sys

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import TrialState
from PIL import Image

from posevit.core.config import compose_config
from posevit.core.errors import ConfigError, DataError
from posevit.sweep.search import BASELINE_ATTR, enqueue_baseline, fail_interrupted_trials, tell
from posevit.sweep.study_report import (
    format_study,
    open_study,
    plot_study,
    storage_url,
    summarise_study,
    trial_overrides,
)
from tests.helpers import ROOT
from tests.helpers.dvc_project import preprocessed_smoke_project

SPACE = [
    "train.lr=tag(log, interval(1e-4, 3e-3))",
    "train.layer_decay=choice('null', 0.65, 0.75)",
    "model.freeze_blocks=int(interval(0, 2))",
]


def new_study(tmp_path, name: str = "search") -> optuna.Study:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    return optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)


def test_each_job_outcome_is_told_as_complete_pruned_or_failed(tmp_path):
    study = new_study(tmp_path)
    trials = [study.ask() for _ in range(4)]
    trials[1].report(0.1, step=0)
    outcomes = [
        JobReturn(status=JobStatus.COMPLETED, _return_value=0.75),
        JobReturn(status=JobStatus.FAILED, _return_value=optuna.TrialPruned("Trial was pruned at epoch 0.")),
        JobReturn(status=JobStatus.FAILED, _return_value=ConfigError("train.lr: must be < 1")),
        JobReturn(status=JobStatus.COMPLETED, _return_value=math.nan),
    ]
    assert [tell(study, trial, ret) for trial, ret in zip(trials, outcomes, strict=True)] == [True, True, False, False]
    fresh = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.state for t in fresh.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.FAIL]
    assert fresh.trials[0].value == 0.75 and fresh.trials[1].intermediate_values == {0: 0.1}


def test_trials_an_interrupted_search_left_running_are_failed(tmp_path):
    study = new_study(tmp_path)
    done = study.ask()
    study.tell(done, 0.5)
    study.ask()  # what a killed sweeper leaves: asked, never told
    fail_interrupted_trials(new_study(tmp_path))
    assert [t.state for t in new_study(tmp_path).trials] == [TrialState.COMPLETE, TrialState.FAIL]


def test_the_baseline_trial_runs_the_configs_own_values(tmp_path):
    space, _ = create_params_from_overrides(SPACE)
    config = OmegaConf.create({"train": {"lr": 5e-4, "layer_decay": None}, "model": {"freeze_blocks": 0}})
    study = new_study(tmp_path)
    assert enqueue_baseline(study, space, config)
    first = study.ask(fixed_distributions=space)
    assert first.params == {"train.lr": 5e-4, "train.layer_decay": "null", "model.freeze_blocks": 0}

    outside = OmegaConf.create({"train": {"lr": 1e-2, "layer_decay": None}, "model": {"freeze_blocks": 0}})
    other = new_study(tmp_path, "other")
    assert not enqueue_baseline(other, space, outside)  # lr 1e-2 is not in [1e-4, 3e-3]: no baseline
    assert other.get_trials(states=(TrialState.WAITING,)) == []


def fill_study(study: optuna.Study) -> None:
    """A search's study as the sweeper leaves it: a baseline, completed, pruned and failed trials."""
    space, _ = create_params_from_overrides(SPACE)
    study.enqueue_trial({"train.lr": 5e-4, "train.layer_decay": "null", "model.freeze_blocks": 0})
    curves = [[0.2, 0.4, 0.5], [0.3, 0.6, 0.7], [0.1, 0.3, 0.35], [0.25, 0.5, 0.6], [0.05], None]
    for number, curve in enumerate(curves):
        trial = study.ask(fixed_distributions=space)
        trial.set_user_attr("hparams_search", "optuna")
        trial.set_user_attr("experiment", "smoke")
        if number == 0:
            trial.set_user_attr(BASELINE_ATTR, True)
        for step, value in enumerate(curve or []):
            trial.report(value, step)
        if curve is None:
            study.tell(trial, state=TrialState.FAIL)
        elif len(curve) == 1:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, max(curve))


def test_the_study_report_counts_ranks_and_plots(tmp_path):
    study = new_study(tmp_path)
    fill_study(study)
    summary = summarise_study(open_study(str(tmp_path)))
    assert summary.counts == {"COMPLETE": 4, "PRUNED": 1, "FAIL": 1} and summary.total == 6
    assert summary.best.number == 1 and summary.best.value == 0.7
    assert summary.baseline.number == 0 and summary.pruned_steps == {4: 1}
    assert set(summary.importances) == {"train.lr", "train.layer_decay", "model.freeze_blocks"}
    assert sum(summary.importances.values()) == pytest.approx(1.0)
    text = format_study(summary)
    assert "6 trials (4 complete, 1 pruned, 1 fail)" in text
    assert "best trial 1: val/acc 0.7000" in text and "best - baseline = +0.2000" in text
    assert "pruned trials (epochs reported): 4 after 1" in text and "parameter importances: " in text

    plots = plot_study(study, tmp_path / "plots", summary.importances)
    assert [p.name for p in plots] == ["optuna_history.png", "optuna_importances.png"]
    assert all(Image.open(p).size == (960, 576) for p in plots)

    # The re-run takes the search's fixed overrides and the trial's values, not the search switch or the marker.
    overrides = trial_overrides(study.trials[0])
    assert overrides[0] == "experiment=smoke"
    assert sorted(overrides[1:]) == ["model.freeze_blocks=0", "train.layer_decay=null", "train.lr=0.0005"]


def test_the_report_finds_the_study_or_says_what_is_wrong(tmp_path):
    database = tmp_path / "optuna.db"
    with pytest.raises(DataError, match="no Optuna study here"):
        storage_url(str(tmp_path / "nowhere"))
    new_study(tmp_path, "a")
    new_study(tmp_path, "b")
    assert storage_url(str(tmp_path)) == storage_url(str(database)) == f"sqlite:///{database}"
    assert storage_url("postgresql://db/optuna") == "postgresql://db/optuna"
    with pytest.raises(ConfigError, match="holds 2 studies .*pick one with --study"):
        open_study(str(tmp_path))
    with pytest.raises(ConfigError, match="no study 'c'"):
        open_study(str(tmp_path), "c")
    with pytest.raises(DataError, match="no completed trial"):
        summarise_study(open_study(f"sqlite:///{database}", "a"))


# One learning rate learns, the other cannot: with the rest fixed, the search prunes the second once a trial of the
# first has completed (TPE's seeded start draws 1e-7 for trial 1). Three epochs of the smoke data keep a trial short.
SEARCH = (
    "hparams_search=optuna",
    "experiment=smoke",
    "train.epochs=3",
    "train.warmup_epochs=0",
    "train.lr=choice(5e-4, 1e-7)",
    "train.layer_decay=null",
    "model.drop_path_rate=0.0",
    "model.freeze_blocks=0",
    "train.mixup=0.0",
    "train.label_smoothing=0.1",
    "hydra.sweeper.study_name=smoke",
    "hydra.sweeper.n_jobs=1",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=0",
)


def search(monkeypatch: pytest.MonkeyPatch, n_trials: int) -> None:
    """`python -m posevit.sweep --multirun SEARCH hydra.sweeper.n_trials=N`, in this process (real Hydra, its
    basic launcher: the trials run here, one after another)."""
    from hydra.core.global_hydra import GlobalHydra

    from posevit.sweep.__main__ import main

    monkeypatch.setattr(sys, "argv", ["posevit.sweep", "--multirun", *SEARCH, f"hydra.sweeper.n_trials={n_trials}"])
    GlobalHydra.instance().clear()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        main()
    finally:  # Hydra's job logging adds handlers (files in the sweep dir, this test's captured stdout): later tests
        for handler in root.handlers:  # of this worker would log into them after they are gone
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def test_the_search_config_runs_the_posevit_sweeper_through_either_launcher():
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class

    for launcher, name in (("parallel", "JoblibLauncher"), ("slurm", "SlurmLauncher")):
        with initialize_config_dir(str(ROOT / "conf"), version_base=None):
            cfg = compose(
                "config", overrides=["hparams_search=optuna", f"hydra/launcher={launcher}"], return_hydra_config=True
            )
        assert get_class(cfg.hydra.launcher._target_).__name__ == name
    sweeper = cfg.hydra.sweeper
    assert get_class(sweeper._target_).__name__ == "PosevitOptunaSweeper"
    assert sweeper.storage == "sqlite:///multirun/search/posevit/optuna.db" and sweeper.direction == "maximize"
    assert sweeper.sampler.seed == 0 and sweeper.pruner._target_ == "optuna.pruners.MedianPruner"
    assert set(sweeper.params) == {
        "train.lr",
        "train.layer_decay",
        "model.drop_path_rate",
        "model.freeze_blocks",
        "train.mixup",
        "train.label_smoothing",
    }
    assert "hydra" not in compose_config(["hparams_search=optuna"])  # the search adds nothing to the run's config


@pytest.mark.slow
def test_a_search_prunes_resumes_and_reports_on_the_test_split(tmp_path_factory, monkeypatch, capsys):
    project = preprocessed_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("search") / "posevit")
    monkeypatch.chdir(project.root)
    sweep_dir = project.root / "multirun" / "search" / "smoke"
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"

    # Stopped after 2 trials, with a third asked and never told: what a search killed mid-trial leaves.
    search(monkeypatch, n_trials=2)
    optuna.load_study(study_name="smoke", storage=storage).ask()
    before = optuna.load_study(study_name="smoke", storage=storage).trials

    # The same search again continues the study: the interrupted trial is failed, the study topped up to 3.
    search(monkeypatch, n_trials=3)
    study = optuna.load_study(study_name="smoke", storage=storage)
    trials = study.trials
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL]
    assert [(t.number, t.datetime_start) for t in trials[:2]] == [(t.number, t.datetime_start) for t in before[:2]]
    assert len(trials) == 4 and trials[3].state in (TrialState.COMPLETE, TrialState.PRUNED)

    # Pruning ended trial 1 (lr 1e-7) before the last of its 3 epochs; trial 0 was the baseline, the config's lr.
    pruned = trials[1]
    steps = len(pruned.intermediate_values)
    assert pruned.params["train.lr"] == 1e-7 and steps < 3
    assert f"pruned at epoch {steps - 1}" in json.loads((sweep_dir / "1" / "run.json").read_text())["pruned"]
    assert trials[0].user_attrs[BASELINE_ATTR] and trials[0].params["train.lr"] == 5e-4
    assert list(trials[0].intermediate_values) == [0, 1, 2] and study.best_value >= trials[0].value
    trial_record = json.loads((sweep_dir / "0" / "run.json").read_text())
    assert trial_record["train"]["best_val_acc"] == trials[0].value and "test" not in trial_record

    # The report: the study and its plots, then the best setting with fresh seeds (2 here; 3 by default) on test.
    from posevit.sweep import report

    capsys.readouterr()
    report.main(["--optuna", str(sweep_dir), "--plots-dir", "plots/search", "--seeds", "2"])
    out = capsys.readouterr().out
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials)
    assert f"best trial {study.best_trial.number}: val/acc {study.best_value:.4f}" in out
    assert (
        f"{n_pruned} pruned" in out and "1 fail" in out and f"pruned trials (epochs reported): 1 after {steps}" in out
    )
    assert (project.root / "plots" / "search" / "optuna_history.png").is_file()
    assert "train.seed=1,2 on the test split" in out
    reruns = sorted(p.name for p in (sweep_dir / "best").iterdir())
    assert reruns == ["seed_1", "seed_2"]
    tests = [json.loads((sweep_dir / "best" / r / "run.json").read_text())["test"]["accuracy"] for r in reruns]
    assert f"test accuracy of the best setting: {sum(tests) / 2:.4f} [" in out
