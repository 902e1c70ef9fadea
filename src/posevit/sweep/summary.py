"""Honest comparison of frozen-block settings: mean and t interval across seeds, a plot and a workbook.

Runs come from a Hydra sweep directory (`src/posevit/sweep/__main__.py` writes run.json per point) or from
`dvc exp show --json`. One setting = one `model.freeze_blocks` value; its seeds are the sample.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)
METRICS = ("accuracy", "f1_weighted", "f1_macro")


@dataclass(frozen=True)
class SweepRun:
    name: str
    freeze_blocks: int
    seed: int
    metrics: dict[str, float]  # test metrics
    wall_time_s: float | None
    best_val_acc: float | None = None


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float  # NaN when there is one seed: no interval from one sample
    high: float

    def overlaps(self, other: Interval) -> bool:
        if math.isnan(self.low) or math.isnan(other.low):
            return True  # unknown spread: cannot claim a difference
        return self.low <= other.high and other.low <= self.high


@dataclass
class Setting:
    freeze_blocks: int
    runs: list[SweepRun]
    intervals: dict[str, Interval] = field(default_factory=dict)
    wall_time_s: float | None = None
    best: bool = False
    overlaps_best: bool = False

    @property
    def n(self) -> int:
        return len(self.runs)


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    """Mean and Student-t interval of the mean (the seeds are a small sample)."""
    sample = np.asarray(values, dtype=float)
    mean = float(sample.mean())
    if len(sample) < 2:
        return Interval(mean, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, df=len(sample) - 1) * sample.std(ddof=1) / math.sqrt(len(sample)))
    return Interval(mean, mean - half, mean + half)


def summarise(runs: list[SweepRun], level: float = 0.95, key: str = "accuracy") -> list[Setting]:
    """One Setting per freeze_blocks value; the best by mean `key`, and which settings it cannot be told from."""
    if not runs:
        raise ValueError("no finished runs to summarise")
    settings = []
    for blocks in sorted({run.freeze_blocks for run in runs}):
        group = [run for run in runs if run.freeze_blocks == blocks]
        times = [run.wall_time_s for run in group if run.wall_time_s is not None]
        settings.append(
            Setting(
                blocks,
                group,
                {name: t_interval([run.metrics[name] for run in group], level) for name in METRICS},
                float(np.mean(times)) if times else None,
            )
        )
    best = max(settings, key=lambda setting: setting.intervals[key].mean)
    for setting in settings:
        setting.best = setting is best
        setting.overlaps_best = setting.intervals[key].overlaps(best.intervals[key])
    return settings


def runs_from_hydra(sweep_dir: Path) -> list[SweepRun]:
    """Every finished point of a Hydra sweep directory (failed points are logged and left out)."""
    runs = []
    for path in sorted(Path(sweep_dir).glob("*/run.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        record = json.loads(path.read_text())
        if "error" in record:
            log.warning("%s failed: %s", path.parent, record["error"])
            continue
        runs.append(
            SweepRun(
                name=f"{path.parent.name}: {' '.join(record['overrides'])}",
                freeze_blocks=record["params"]["model"]["freeze_blocks"],
                seed=record["params"]["train"]["seed"],
                metrics={name: record["test"][name] for name in METRICS},
                wall_time_s=record["train"].get("wall_time_s"),
                best_val_acc=record["train"].get("best_val_acc"),
            )
        )
    if not runs:
        raise ValueError(f"{sweep_dir} has no finished sweep points (*/run.json)")
    return runs


def runs_from_dvc_exp(show: list[dict[str, Any]]) -> list[SweepRun]:
    """Every experiment in `dvc exp show --json` output that has test metrics."""
    runs = []
    for baseline in show:
        for experiment in baseline.get("experiments") or []:
            for rev in experiment.get("revs", []):
                data = rev.get("data") or {}
                params = data.get("params", {}).get("params.yaml", {}).get("data")
                metrics = data.get("metrics", {})
                test = metrics.get("metrics/test.json", {}).get("data")
                if rev.get("error") or not params or not test:
                    log.warning("experiment %s has no test metrics (failed or still queued): left out", rev.get("name"))
                    continue
                train = metrics.get("metrics/train.json", {}).get("data", {})
                runs.append(
                    SweepRun(
                        name=rev.get("name") or rev["rev"][:7],
                        freeze_blocks=params["model"]["freeze_blocks"],
                        seed=params["train"]["seed"],
                        metrics={name: test[name] for name in METRICS},
                        wall_time_s=train.get("wall_time_s"),
                        best_val_acc=train.get("best_val_acc"),
                    )
                )
    if not runs:
        raise ValueError("`dvc exp show` lists no finished experiments with metrics/test.json")
    return runs


def plot_sweep(settings: list[Setting], path: Path, level: float = 0.95) -> None:
    """Accuracy and F1 (mean, t interval across seeds) against frozen blocks; training time on a second axis."""
    from matplotlib.figure import Figure

    x = np.array([setting.freeze_blocks for setting in settings], dtype=float)
    fig = Figure(figsize=(8, 4.8), dpi=120)
    ax = fig.subplots()
    for offset, (name, colour) in zip(
        (-0.06, 0.06), (("accuracy", "tab:blue"), ("f1_weighted", "tab:orange")), strict=True
    ):
        intervals = [setting.intervals[name] for setting in settings]
        means = np.array([i.mean for i in intervals])
        lows = np.array([i.mean - i.low if not math.isnan(i.low) else 0.0 for i in intervals])
        highs = np.array([i.high - i.mean if not math.isnan(i.high) else 0.0 for i in intervals])
        ax.errorbar(
            x + offset,
            means,
            yerr=[lows, highs],
            fmt="o-",
            capsize=4,
            color=colour,
            label=f"test {name} (mean, {level:.0%} t interval)",
        )
        for setting in settings:  # every seed, faint, so the spread is visible too
            ax.scatter(
                [setting.freeze_blocks + offset] * setting.n,
                [run.metrics[name] for run in setting.runs],
                s=10,
                color=colour,
                alpha=0.35,
            )
    best = next(setting for setting in settings if setting.best)
    ax.axvline(best.freeze_blocks, color="grey", linestyle=":", label=f"best: {best.freeze_blocks} frozen")
    ax.set_xlabel("frozen transformer blocks (model.freeze_blocks)")
    ax.set_ylabel("test score")
    ax.set_xticks(x)
    seeds = sorted({setting.n for setting in settings})
    ax.set_title(f"Frozen-block sweep: {len(settings)} settings x {'/'.join(map(str, seeds))} seeds")
    times = [setting.wall_time_s for setting in settings if setting.wall_time_s is not None]
    if len(times) == len(settings):
        twin = ax.twinx()
        twin.bar(x, times, width=0.35, alpha=0.15, color="tab:green", label="training time (s, mean)")
        twin.set_ylabel("training time per run (s)")
        twin.set_ylim(0, max(times) * 2.2)  # bars stay in the lower half, under the scores
        handles, labels = ax.get_legend_handles_labels()
        more_handles, more_labels = twin.get_legend_handles_labels()
        ax.legend(handles + more_handles, labels + more_labels, loc="lower left", fontsize=8)
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
    else:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def write_workbook(settings: list[Setting], path: Path, level: float = 0.95) -> None:
    """Runs (one row each), Settings (aggregated; best highlighted; overlap with the best flagged), a chart."""
    from posevit.evaluate.workbook import reproducible_workbook

    workbook = reproducible_workbook(path)
    bold = workbook.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
    number = workbook.add_format({"num_format": "0.0000"})
    best_format = workbook.add_format({"bg_color": "#C6EFCE", "bold": True})

    runs = workbook.add_worksheet("Runs")
    headers = ["run", "freeze_blocks", "seed", *METRICS, "best_val_acc", "train_wall_time_s"]
    runs.write_row(0, 0, headers, bold)
    row = 1
    for setting in settings:
        for run in sorted(setting.runs, key=lambda r: r.seed):
            runs.write_row(row, 0, [run.name, run.freeze_blocks, run.seed])
            for col, name in enumerate(METRICS, start=3):
                runs.write_number(row, col, run.metrics[name], number)
            runs.write(row, 6, run.best_val_acc if run.best_val_acc is not None else "", number)
            runs.write(row, 7, run.wall_time_s if run.wall_time_s is not None else "")
            row += 1
    runs.set_column(0, 0, 48)
    runs.set_column(1, len(headers), 14)
    runs.autofilter(0, 0, row - 1, len(headers) - 1)
    runs.freeze_panes(1, 0)

    sheet = workbook.add_worksheet("Settings")
    headers = ["freeze_blocks", "seeds"]
    for name in METRICS:
        headers += [f"{name}_mean", f"{name}_ci_low", f"{name}_ci_high"]
    headers += ["train_wall_time_s", "best", "interval overlaps best"]
    sheet.write_row(0, 0, headers, bold)
    for row, setting in enumerate(settings, start=1):
        style = best_format if setting.best else None
        sheet.write_row(row, 0, [setting.freeze_blocks, setting.n], style)
        col = 2
        for name in METRICS:
            interval = setting.intervals[name]
            for value in (interval.mean, interval.low, interval.high):
                if math.isnan(value):
                    sheet.write_string(row, col, "n/a (1 seed)", style)
                else:
                    sheet.write_number(row, col, value, best_format if setting.best else number)
                col += 1
        sheet.write(row, col, setting.wall_time_s if setting.wall_time_s is not None else "", style)
        sheet.write(row, col + 1, "best" if setting.best else "", style)
        sheet.write(row, col + 2, "yes" if setting.overlaps_best else "no", style)
    sheet.set_column(0, len(headers), 16)
    sheet.freeze_panes(1, 1)
    note = len(settings) + 2
    sheet.write(
        note,
        0,
        f"Intervals: {level:.0%} Student-t across seeds. 'overlaps best' = yes means the data "
        f"cannot tell this setting from the best one (accuracy).",
    )
    chart = workbook.add_chart({"type": "line"})
    chart.add_series(
        {
            "name": "accuracy (mean)",
            "categories": ["Settings", 1, 0, len(settings), 0],
            "values": ["Settings", 1, 2, len(settings), 2],
            "marker": {"type": "circle"},
        }
    )
    chart.add_series(
        {
            "name": "f1_weighted (mean)",
            "categories": ["Settings", 1, 0, len(settings), 0],
            "values": ["Settings", 1, 5, len(settings), 5],
            "marker": {"type": "square"},
        }
    )
    chart.set_title({"name": "Test score against frozen blocks"})
    chart.set_x_axis({"name": "frozen blocks"})
    sheet.insert_chart(note + 2, 0, chart)
    workbook.close()
