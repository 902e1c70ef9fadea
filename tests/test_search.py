"""Optuna search: the sweeper's bookkeeping and the study report on real SQLite studies (in-process, no
training), then a real search on the smoke config: pruning ends a trial early, a stopped search resumes, and the
report re-runs the best setting on the test split."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import OmegaConf
from optuna.trial import TrialState
from PIL import Image

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


# One learning rate learns, the other cannot: with the rest fixed, the search must prune the second once a
# trial of the first has completed. Tiny epochs keep each trial to seconds.
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
    "hydra.sweeper.n_trials=6",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=0",
    "hydra/launcher=parallel",
)


def counted(storage: str) -> int:
    try:
        study = optuna.load_study(study_name="smoke", storage=storage)
    except KeyError:  # the sweeper has not created the study yet
        return 0
    return len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))


@pytest.mark.slow
def test_a_search_prunes_resumes_after_a_kill_and_reports_on_the_test_split(tmp_path_factory, monkeypatch, capsys):
    project = preprocessed_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("search") / "posevit")
    command = [sys.executable, "-m", "posevit.sweep", "--multirun", *SEARCH]
    sweep_dir = project.root / "multirun" / "search" / "smoke"
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"

    # Killed (the sweeper and its joblib workers) once the first batch of two trials is in the study.
    first = subprocess.Popen(
        command,
        cwd=project.root,
        env=project.env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while counted(storage) < 2:
        assert first.poll() is None and time.monotonic() < deadline, "the search ended before it was killed"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    before = optuna.load_study(study_name="smoke", storage=storage).trials

    # The same command again: the study continues and is topped up to n_trials=6.
    resumed = project.run(*command)
    assert "Joblib.Parallel(n_jobs=2" in resumed.stdout + resumed.stderr
    study = optuna.load_study(study_name="smoke", storage=storage)
    trials = study.trials
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 6
    assert [(t.number, t.datetime_start) for t in before if t.state == TrialState.COMPLETE] == [
        (t.number, t.datetime_start) for t in trials[: len(before)] if t.state == TrialState.COMPLETE
    ]
    interrupted = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.number < len(before) for t in interrupted)  # only what the kill left running

    # Pruning ended a trial before its last epoch; the baseline (the config's own lr) is trial 0.
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and all(len(t.intermediate_values) < 3 and t.params["train.lr"] == 1e-7 for t in pruned)
    record = json.loads((sweep_dir / str(pruned[0].number) / "run.json").read_text())
    assert "pruned at epoch" in record["pruned"]
    assert trials[0].user_attrs[BASELINE_ATTR] and trials[0].params["train.lr"] == 5e-4
    assert study.best_value >= trials[0].value

    # The report: the study, its plots, then the best setting with 3 fresh seeds on the test split.
    from posevit.sweep import report

    monkeypatch.chdir(project.root)
    report.main(["--optuna", str(sweep_dir), "--plots-dir", "plots/search"])
    out = capsys.readouterr().out
    assert f"best trial {study.best_trial.number}: val/acc {study.best_value:.4f}" in out
    assert f"{len(pruned)} pruned" in out and "optuna_history.png" in out
    assert "train.seed=1,2,3 on the test split" in out and "test accuracy of the best setting" in out
    reruns = sorted(p.name for p in (sweep_dir / "best").iterdir())
    assert reruns == ["seed_1", "seed_2", "seed_3"]
    tests = [json.loads((sweep_dir / "best" / r / "run.json").read_text())["test"]["accuracy"] for r in reruns]
    assert f"{sum(tests) / 3:.4f} [" in out
