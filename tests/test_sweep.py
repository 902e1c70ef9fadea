"""Sweeps: arms found from the changed parameters, the statistics, the plot and workbook, and real sweeps
both ways (Hydra multirun and `dvc exp run --queue` + `dvc queue start`) on the smoke config."""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np
import openpyxl
import pytest
from PIL import Image
from scipy import stats

from posevit.core.errors import ConfigError
from posevit.sweep.summary import (
    SweepRun,
    flatten,
    holm,
    plot_sweep,
    runs_from_dvc_exp,
    runs_from_hydra,
    summarise,
    t_interval,
    write_workbook,
)
from tests.helpers import ROOT
from tests.helpers.dvc_project import preprocessed_smoke_project


def run(blocks: int, seed: int, accuracy: float, seconds: float = 10.0, layer_decay: float | None = None) -> SweepRun:
    params = {
        "model": {"name": "vit_base_patch16_224", "freeze_blocks": blocks},
        "train": {"seed": seed, "lr": 1e-4, "layer_decay": layer_decay, "augment": {"hflip": True}},
    }
    return SweepRun(
        f"b{blocks}s{seed}",
        flatten(params),
        {"accuracy": accuracy, "f1_weighted": accuracy - 0.01, "f1_macro": accuracy - 0.02},
        seconds,
    )


def test_t_interval_matches_the_textbook():
    values = [0.80, 0.82, 0.81]
    interval = t_interval(values)
    half = stats.t.ppf(0.975, 2) * np.std(values, ddof=1) / math.sqrt(3)
    assert interval.mean == pytest.approx(0.81) and interval.high - interval.mean == pytest.approx(half)
    single = t_interval([0.8])
    assert single.mean == 0.8 and math.isnan(single.low) and math.isnan(single.high)


def test_best_setting_and_overlap_flags():
    runs = [run(0, s, a) for s, a in enumerate([0.80, 0.81, 0.79])]
    runs += [run(2, s, a) for s, a in enumerate([0.90, 0.91, 0.905])]  # clearly best
    runs += [run(4, s, a) for s, a in enumerate([0.85, 0.95, 0.90])]  # noisy: cannot be told from the best
    settings = summarise(runs)
    assert [s.values for s in settings] == [{"model.freeze_blocks": b} for b in (0, 2, 4)]
    assert [s.label for s in settings] == ["freeze_blocks=0", "freeze_blocks=2", "freeze_blocks=4"]
    assert [s.best for s in settings] == [False, True, False]
    assert [s.overlaps_best for s in settings] == [False, True, True]
    assert settings[1].wall_time_s == 10.0 and settings[1].n == 3
    # Welch's test against the best: a clear gap is significant, the noisy arm is not
    assert settings[0].p_vs_best == pytest.approx(
        stats.ttest_ind([0.80, 0.81, 0.79], [0.90, 0.91, 0.905], equal_var=False).pvalue
    )
    assert settings[0].p_vs_best < 0.01 < settings[2].p_vs_best and math.isnan(settings[1].p_vs_best)
    # two arms compared with the best: Holm doubles the smaller p, keeps the larger (never below the first)
    p0, p2 = settings[0].p_vs_best, settings[2].p_vs_best
    assert settings[0].p_holm == pytest.approx(2 * p0) and settings[2].p_holm == pytest.approx(max(2 * p0, p2))
    assert math.isnan(settings[1].p_holm)


def test_holm_adjustment_matches_the_textbook():
    """Holm (1979): the i-th smallest of m p-values times (m - i + 1), made monotone, capped at 1."""
    assert holm([0.01, 0.04, 0.03, math.nan, 0.005]) == pytest.approx([0.03, 0.06, 0.06, math.nan, 0.02], nan_ok=True)
    assert holm([0.4, 0.6]) == [pytest.approx(0.8), pytest.approx(0.8)]
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert math.isnan(holm([math.nan])[0])


def test_arms_are_the_changed_parameters_freezing_against_layer_decay():
    """The README's comparison: 3 seeds each of plain, two layer decays and two freezing depths."""
    arms = [(0, None, 0.84), (0, 0.65, 0.88), (0, 0.75, 0.89), (2, None, 0.83), (6, None, 0.80)]
    runs = [
        run(blocks, seed, accuracy + 0.005 * seed, layer_decay=decay)
        for blocks, decay, accuracy in arms
        for seed in (0, 1, 2)
    ]
    settings = summarise(runs)
    assert all(set(s.values) == {"model.freeze_blocks", "train.layer_decay"} for s in settings)  # not seed, not lr
    assert [s.label for s in settings] == [
        "freeze_blocks=0 layer_decay=null",
        "freeze_blocks=0 layer_decay=0.65",
        "freeze_blocks=0 layer_decay=0.75",
        "freeze_blocks=2 layer_decay=null",
        "freeze_blocks=6 layer_decay=null",
    ]
    assert [s.n for s in settings] == [3] * 5 and next(s for s in settings if s.best).label.endswith("0.75")
    assert settings[2].intervals["accuracy"].mean == pytest.approx(0.895)

    by_freezing = summarise(runs, by=["model.freeze_blocks"])  # the layer-decay arms pooled, on request
    assert [(s.label, s.n) for s in by_freezing] == [
        ("freeze_blocks=0", 9),
        ("freeze_blocks=2", 3),
        ("freeze_blocks=6", 3),
    ]
    with pytest.raises(ConfigError, match="model.freeze_block"):
        summarise(runs, by=["model.freeze_block"])
    seeds_only = summarise([run(0, seed, 0.8) for seed in (0, 1)])
    assert [(s.label, s.n) for s in seeds_only] == [("all runs", 2)]


def test_plot_and_workbook(tmp_path):
    runs = [run(b, s, 0.8 + 0.02 * b + 0.01 * s, seconds=100 - 10 * b) for b in (0, 1, 2) for s in (0, 1)]
    settings = summarise(runs)
    plot_sweep(settings, tmp_path / "sweep.png")
    write_workbook(settings, tmp_path / "sweep.xlsx")
    assert Image.open(tmp_path / "sweep.png").size == (960, 576)

    book = openpyxl.load_workbook(tmp_path / "sweep.xlsx")
    rows = list(book["Runs"].iter_rows(min_row=2, values_only=True))
    assert len(rows) == 6 and rows[0][:4] == ("b0s0", 0, 0, pytest.approx(0.8))
    sheet = book["Settings"]
    header = [cell.value for cell in sheet[1]]
    table = [
        dict(zip(header, [cell.value for cell in row], strict=False)) for row in sheet.iter_rows(min_row=2, max_row=4)
    ]
    assert [r["best"] for r in table] == ["", "", "best"] or [r["best"] for r in table] == [None, None, "best"]
    assert [r["arm"] for r in table] == ["freeze_blocks=0", "freeze_blocks=1", "freeze_blocks=2"]
    assert table[2]["accuracy_mean"] == pytest.approx(settings[2].intervals["accuracy"].mean)
    assert table[0]["p_vs_best (Welch)"] == pytest.approx(settings[0].p_vs_best)
    assert table[0]["p_vs_best (Holm)"] == pytest.approx(settings[0].p_holm)
    assert table[2]["accuracy_ci_low"] == pytest.approx(settings[2].intervals["accuracy"].low)
    assert [r["interval overlaps best"] for r in table] == ["yes" if s.overlaps_best else "no" for s in settings]
    assert sheet.cell(row=4, column=1).fill.fgColor.rgb.endswith("C6EFCE")  # the best row is highlighted
    assert sheet._charts


def test_slurm_launcher_asks_for_the_trainers_nodes_and_gpus():
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "trainer=multinode"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 8, 8)
    assert get_class(launcher["_target_"]).__name__ == "SlurmLauncher"
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        parallel = compose("config", overrides=["hydra/launcher=parallel"], return_hydra_config=True)
    assert get_class(parallel.hydra.launcher._target_).__name__ == "JoblibLauncher"


@pytest.mark.slow
def test_two_point_sweep_with_hydra_multirun_and_with_the_dvc_queue(tmp_path_factory):
    project = preprocessed_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("sweep") / "posevit")
    tracked_before = project.run("git", "status", "--porcelain").stdout

    # Hydra: 2 settings at a seed that is not the default, as 2 parallel processes (joblib launcher), each in its
    # own run directory, DVC outputs untouched. (Seeds as replicates of an arm: test_arms_are_the_changed_...)
    sweep_dir = project.root.parent / "multirun"
    launched = project.run(
        sys.executable,
        "-m",
        "posevit.sweep",
        "--multirun",
        "hydra/launcher=parallel",
        "experiment=smoke",
        "model.freeze_blocks=0,1",
        "train.seed=1",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert "Joblib.Parallel(n_jobs=2" in launched.stdout + launched.stderr
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1"]
    assert all((sweep_dir / job / "models" / "model.safetensors").is_file() for job in "01")
    assert (
        project.run("git", "status", "--porcelain").stdout == tracked_before and not (project.root / "models").exists()
    )
    hydra_runs = runs_from_hydra(sweep_dir)
    assert sorted((r.params["model.freeze_blocks"], r.seed) for r in hydra_runs) == [(0, 1), (1, 1)]
    summary = project.run(sys.executable, "-m", "posevit.sweep.report", "--hydra", str(sweep_dir))
    assert "2 runs, 2 arms of model.freeze_blocks" in summary.stdout and "<- best" in summary.stdout
    assert (project.root / "plots" / "sweep.png").is_file() and (project.root / "reports" / "sweep.xlsx").is_file()

    # DVC: two queued sweeps, as the README compares freezing with layer decay: the arms are found from
    # what the experiments changed. Each runs up to `evaluate`, where the scores a sweep compares come from
    # (export and push would add a minute of CPU and no figure the summary reads).
    project.dvc("exp", "run", "--queue", "-S", "experiment=smoke", "-S", "train.layer_decay=0.75", "evaluate")
    project.dvc("exp", "run", "--queue", "-S", "experiment=smoke", "-S", "model.freeze_blocks=1", "evaluate")
    project.dvc("queue", "start", "-j", "2")  # both at once: smoke runs are mostly start-up, which overlaps
    deadline = time.monotonic() + 900
    while True:
        status = project.dvc("queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status
    shown = json.loads(project.dvc("exp", "show", "--json").stdout)
    dvc_runs = runs_from_dvc_exp(shown)
    arms = sorted((r.params["model.freeze_blocks"], r.params["train.layer_decay"] or 0) for r in dvc_runs)
    assert arms == [(0, 0.75), (1, 0)]
    assert all(0 <= r.metrics["accuracy"] <= 1 and r.wall_time_s > 0 for r in dvc_runs)
    table = project.dvc("exp", "show", "--only-changed", "--csv").stdout
    assert "model.freeze_blocks" in table and "accuracy" in table
    summary = project.run(
        sys.executable,
        "-m",
        "posevit.sweep.report",
        "--dvc-exp",
        "--plot",
        "plots/dvc_sweep.png",
        "--workbook",
        "reports/dvc_sweep.xlsx",
    )
    assert "2 runs, 2 arms of model.freeze_blocks x train.layer_decay" in summary.stdout, summary.stdout
    assert (
        "freeze_blocks=1 layer_decay=null" in summary.stdout and (project.root / "reports" / "dvc_sweep.xlsx").is_file()
    )
