"""Frozen-block sweeps: the statistics, the plot and workbook, and a real 2-point sweep both ways
(Hydra multirun and `dvc exp run --queue` + `dvc queue start`) on the smoke config."""

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

from posevit.sweep.summary import (
    SweepRun,
    plot_sweep,
    runs_from_dvc_exp,
    runs_from_hydra,
    summarise,
    t_interval,
    write_workbook,
)
from tests.helpers import ROOT
from tests.helpers.dvc_project import copy_project


def run(blocks: int, seed: int, accuracy: float, seconds: float = 10.0) -> SweepRun:
    return SweepRun(
        f"b{blocks}s{seed}",
        blocks,
        seed,
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
    assert [s.freeze_blocks for s in settings] == [0, 2, 4]
    assert [s.best for s in settings] == [False, True, False]
    assert [s.overlaps_best for s in settings] == [False, True, True]
    assert settings[1].wall_time_s == 10.0 and settings[1].n == 3


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
    assert table[2]["accuracy_mean"] == pytest.approx(settings[2].intervals["accuracy"].mean)
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
    project = copy_project(tmp_path_factory.mktemp("sweep") / "posevit", "experiment=smoke")
    project.dvc("repro", "preprocess")
    project.commit("preprocessed")
    tracked_before = project.run("git", "status", "--porcelain").stdout

    # Hydra: 2 settings x 2 seeds as 2 parallel processes (joblib launcher), each in its own run
    # directory, DVC outputs untouched.
    sweep_dir = project.root.parent / "multirun"
    launched = project.run(
        sys.executable,
        "-m",
        "posevit.sweep",
        "--multirun",
        "hydra/launcher=parallel",
        "experiment=smoke",
        "model.freeze_blocks=0,1",
        "train.seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert "Joblib.Parallel(n_jobs=2" in launched.stdout + launched.stderr
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    assert all((sweep_dir / job / "models" / "model.safetensors").is_file() for job in "0123")
    assert (
        project.run("git", "status", "--porcelain").stdout == tracked_before and not (project.root / "models").exists()
    )
    hydra_runs = runs_from_hydra(sweep_dir)
    assert sorted((r.freeze_blocks, r.seed) for r in hydra_runs) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    summary = project.run(sys.executable, "-m", "posevit.sweep.report", "--hydra", str(sweep_dir))
    assert "4 runs, 2 settings" in summary.stdout and "<- best" in summary.stdout
    assert (project.root / "plots" / "freeze_sweep.png").is_file() and (
        project.root / "reports" / "freeze_sweep.xlsx"
    ).is_file()

    # DVC: the same 2 settings through the experiment queue.
    project.dvc("exp", "run", "--queue", "-S", "experiment=smoke", "-S", "model.freeze_blocks=0,1")
    project.dvc("queue", "start", "-j", "1")
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
    assert sorted(r.freeze_blocks for r in dvc_runs) == [0, 1]
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
    assert "2 runs, 2 settings" in summary.stdout and (project.root / "reports" / "dvc_sweep.xlsx").is_file()
