"""What an Optuna search found, and what its choice scores on data it did not select on.

Reads a study (`python -m posevit.sweep.report --optuna multirun/search/posevit`): the best trial, the trial
counts by state, the baseline trial (the config's own values), parameter importances, and Optuna's
matplotlib plots of the optimisation history and the importances. Then it re-runs the best trial's setting
with fresh seeds (none of them the seed the search ran) evaluated on the test split: the search selected on
val accuracy, so the figure to report is this one, as mean and t interval across seeds.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from posevit.core.config import compose_config
from posevit.core.errors import ConfigError, DataError
from posevit.sweep.point import RUN_FILE, run_point
from posevit.sweep.search import BASELINE_ATTR, MONITOR
from posevit.sweep.summary import SweepRun, runs_from_hydra

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
DATABASE = "optuna.db"  # the study's file in a sweep directory (conf/hparams_search/optuna.yaml)
HISTORY_PLOT = "optuna_history.png"
IMPORTANCE_PLOT = "optuna_importances.png"
NOT_OVERRIDES = ("hparams_search", "train.seed", BASELINE_ATTR)  # trial attributes a re-run does not take


def storage_url(source: str) -> str:
    """A storage URL as given, a sweep directory (its optuna.db) or a SQLite file, as a storage URL."""
    if "://" in source:
        return source
    path = Path(source)
    database = path / DATABASE if path.is_dir() else path
    if not database.is_file():
        raise DataError(
            f"{source}: no Optuna study here (expected a sweep directory with {DATABASE}, a .db file "
            "or a storage URL such as sqlite:///multirun/search/posevit/optuna.db)"
        )
    return f"sqlite:///{database}"


def open_study(source: str, name: str | None = None) -> optuna.Study:
    """The study `name` in the storage at `source`; without a name, the storage's only study."""
    storage = storage_url(source)
    names = [summary.study_name for summary in optuna.study.get_all_study_summaries(storage)]
    if name is None:
        if len(names) != 1:
            raise ConfigError(
                f"{source} holds {len(names)} studies ({', '.join(names) or 'none'}): pick one with --study"
            )
        name = names[0]
    elif name not in names:
        raise ConfigError(f"{source} has no study {name!r}; it has: {', '.join(names) or 'none'}")
    return optuna.load_study(study_name=name, storage=storage)


@dataclass(frozen=True)
class StudySummary:
    name: str
    counts: dict[str, int]  # trials by state: COMPLETE, PRUNED, FAIL, RUNNING, WAITING
    best: FrozenTrial
    baseline: FrozenTrial | None  # the trial of the config's own values, when the search ran one
    importances: dict[str, float] | None  # None with fewer than two completed trials
    pruned_steps: dict[int, int]  # pruned trial number -> epochs it reported before it was stopped

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def summarise_study(study: optuna.Study) -> StudySummary:
    trials = study.get_trials(deepcopy=False)
    counts = {state.name: sum(trial.state == state for trial in trials) for state in TrialState}
    if not counts["COMPLETE"]:
        raise DataError(f"study {study.study_name} has no completed trial yet ({len(trials)} trials)")
    baseline = next((t for t in trials if t.user_attrs.get(BASELINE_ATTR) and t.state == TrialState.COMPLETE), None)
    return StudySummary(
        name=study.study_name,
        counts={state: n for state, n in counts.items() if n},
        best=study.best_trial,
        baseline=baseline,
        importances=param_importances(study),
        pruned_steps={t.number: len(t.intermediate_values) for t in trials if t.state == TrialState.PRUNED},
    )


def param_importances(study: optuna.Study) -> dict[str, float] | None:
    """Each searched parameter's share of the value's variation (optuna.importance, mean decrease in impurity of
    a random forest: optuna 2.10's default fANOVA evaluator fails on NumPy 2's arrays)."""
    evaluator = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
        except (RuntimeError, ValueError) as exc:  # too few completed trials, or no parameter that varied
            log.warning("no parameter importances: %s", exc)
            return None


def format_study(summary: StudySummary) -> str:
    counts = ", ".join(f"{n} {state.lower()}" for state, n in summary.counts.items())
    best = summary.best
    lines = [
        f"study {summary.name}: {summary.total} trials ({counts})",
        f"best trial {best.number}: {MONITOR} {best.value:.4f} with {format_params(best.params)}",
    ]
    baseline = summary.baseline
    if baseline is not None and baseline.value is not None and best.value is not None:
        lines.append(
            f"baseline trial {baseline.number} (the config's own values): {MONITOR} "
            f"{baseline.value:.4f}; best - baseline = {best.value - baseline.value:+.4f}"
        )
    if summary.pruned_steps:
        steps = ", ".join(f"{number} after {n}" for number, n in summary.pruned_steps.items())
        lines.append(f"pruned trials (epochs reported): {steps}")
    if summary.importances:
        shares = ", ".join(f"{name} {share:.2f}" for name, share in summary.importances.items())
        lines.append(f"parameter importances: {shares}")
    return "\n".join(lines)


def format_params(params: dict[str, Any]) -> str:
    return " ".join(
        f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}" for name, value in params.items()
    )


def plot_study(study: optuna.Study, directory: Path, importances: dict[str, float] | None) -> list[Path]:
    """The optimisation history (Optuna's matplotlib visualisation) and the importances, as PNG."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        history = optuna_plots.plot_optimization_history(study, target_name=MONITOR).figure
    history.set_size_inches(8, 4.8)
    paths = [save(history, directory / HISTORY_PLOT)]
    plt.close(history)
    if importances:
        paths.append(save(plot_importances(importances, study.study_name), directory / IMPORTANCE_PLOT))
    return paths


def plot_importances(importances: dict[str, float], name: str) -> Figure:
    """A bar per parameter, as Optuna's plot_param_importances draws it (whose optuna 2.10 version calls
    matplotlib.cm.get_cmap, gone since matplotlib 3.9)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 4.8))
    axes = figure.subplots()
    names = list(importances)[::-1]  # the most important on top
    axes.barh(names, [importances[n] for n in names], color="tab:blue")
    for position, n in enumerate(names):
        axes.text(importances[n], position, f" {importances[n]:.2f}", va="center")
    axes.set_xlabel(f"importance for {MONITOR} (mean decrease in impurity)")
    axes.set_title(f"Hyperparameter importances: study {name}")
    return figure


def save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def trial_overrides(trial: FrozenTrial) -> list[str]:
    """The Hydra overrides a trial ran with: the search's fixed ones (the stock sweeper keeps them as user
    attributes) and its sampled parameters, as the sweeper wrote them."""
    fixed = {name: value for name, value in trial.user_attrs.items() if name not in NOT_OVERRIDES}
    return [f"{name}={value}" for name, value in {**fixed, **trial.params}.items()]


def rerun_seeds(overrides: list[str], count: int) -> list[int]:
    """`count` seeds after the one the trials ran with (train.seed of the composed config)."""
    searched = compose_config(overrides)["train"]["seed"]
    return [searched + 1 + i for i in range(count)]


def rerun_on_test(trial: FrozenTrial, seeds: list[int], out_dir: Path) -> list[SweepRun]:
    """Train `trial`'s setting once per seed and evaluate it on the test split, each into out_dir/seed_<s>/
    (a run already there with the same overrides is reused)."""
    base = trial_overrides(trial)
    for seed in seeds:
        overrides = [*base, f"train.seed={seed}"]
        run_dir = out_dir / f"seed_{seed}"
        record_file = run_dir / RUN_FILE
        if record_file.is_file():
            record = json.loads(record_file.read_text())
            if record.get("overrides") == overrides and "test" in record:
                log.info("seed %d: reusing %s", seed, record_file)
                continue
        log.info("re-running trial %d's setting with train.seed=%d -> %s", trial.number, seed, run_dir)
        run_point(compose_config(overrides), run_dir, overrides)
    return [run for run in runs_from_hydra(out_dir) if run.seed in seeds]
