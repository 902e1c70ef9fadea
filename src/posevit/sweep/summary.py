"""Honest comparison of sweep arms: mean and t interval across seeds, a Welch test against the best, a plot
and a workbook.

Runs come from a Hydra sweep directory (`src/posevit/sweep/__main__.py` writes run.json per point) or from
`dvc exp show --json`. An arm is one combination of the parameters the sweep changed (by default every
parameter that differs between runs, `train.seed` aside: e.g. `model.freeze_blocks` x `train.layer_decay`);
its seeds are the sample.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from posevit.core.errors import ConfigError, DataError

log = logging.getLogger(__name__)
METRICS = ("accuracy", "f1_weighted", "f1_macro")
SEED_KEY = "train.seed"  # the sample within an arm, never an arm of its own


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"model": {"freeze_blocks": 2}} -> {"model.freeze_blocks": 2}: the names `-S` and Hydra overrides use."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@dataclass(frozen=True)
class SweepRun:
    name: str
    params: dict[str, Any]  # flattened: "model.freeze_blocks" -> 2
    metrics: dict[str, float]  # test metrics
    wall_time_s: float | None
    best_val_acc: float | None = None

    @property
    def seed(self) -> int:
        return self.params[SEED_KEY]


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
    """One arm of the sweep: the values of the swept keys, and its runs (one per seed)."""

    values: dict[str, Any]
    runs: list[SweepRun]
    intervals: dict[str, Interval] = field(default_factory=dict)
    wall_time_s: float | None = None
    best: bool = False
    overlaps_best: bool = False
    p_vs_best: float = math.nan  # Welch's t-test of the ranking metric against the best arm; NaN for the best
    p_holm: float = math.nan  # p_vs_best adjusted for comparing every arm with the best (Holm-Bonferroni)

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def label(self) -> str:
        """ "freeze_blocks=2 layer_decay=0.75": the last part of each key is enough to tell arms apart."""
        if not self.values:
            return "all runs"
        return " ".join(f"{key.rsplit('.', 1)[-1]}={format_value(value)}" for key, value in self.values.items())


def format_value(value: Any) -> str:
    return "null" if value is None else str(value)


def cell_value(value: Any) -> Any:
    """Numbers stay numbers in the workbook (sortable, filterable); the rest as the config writes them."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else format_value(value)


def t_interval(values: list[float], level: float = 0.95) -> Interval:
    """Mean and Student-t interval of the mean (the seeds are a small sample)."""
    sample = np.asarray(values, dtype=float)
    mean = float(sample.mean())
    if len(sample) < 2:
        return Interval(mean, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, df=len(sample) - 1) * sample.std(ddof=1) / math.sqrt(len(sample)))
    return Interval(mean, mean - half, mean + half)


def welch_p(a: list[float], b: list[float]) -> float:
    """Two-sided Welch t-test p-value; NaN where a side has one run or neither side varies."""
    if len(a) < 2 or len(b) < 2 or (np.std(a) == 0 and np.std(b) == 0):
        return math.nan
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN stays NaN and is not counted): with several arms compared
    to the best, the raw p-values overstate how sure any one difference is."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - rank) * p))  # adjusted values never decrease with p
        adjusted[index] = running
    return adjusted


def swept_keys(runs: Iterable[SweepRun]) -> list[str]:
    """The parameters whose value differs between runs, the seed aside, in config order."""
    runs = list(runs)
    keys: list[str] = []
    for run in runs:
        keys += [key for key in run.params if key not in keys]
    return [key for key in keys if key != SEED_KEY and len({repr(run.params.get(key)) for run in runs}) > 1]


def _order(value: Any) -> tuple[int, Any]:
    """null first, then numbers ascending, then anything else by its text (None and 0.75 do not compare)."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))


def summarise(
    runs: list[SweepRun], level: float = 0.95, key: str = "accuracy", by: list[str] | None = None
) -> list[Setting]:
    """One Setting per arm (the `by` keys, default: every swept key); the best by mean `key`, which arms its
    interval cannot be told from, and each arm's Welch p-value against it."""
    if not runs:
        raise DataError("no finished runs to summarise")
    by = swept_keys(runs) if by is None else by
    missing = sorted({name for name in by for run in runs if name not in run.params})
    if missing:
        raise ConfigError(
            f"no parameter {', '.join(missing)} in the runs: --by takes dotted names like model.freeze_blocks"
        )
    groups: dict[tuple[str, ...], list[SweepRun]] = {}
    for run in runs:
        groups.setdefault(tuple(repr(run.params[name]) for name in by), []).append(run)
    settings = []
    for group in groups.values():
        times = [run.wall_time_s for run in group if run.wall_time_s is not None]
        settings.append(
            Setting(
                {name: group[0].params[name] for name in by},
                sorted(group, key=lambda run: run.seed),
                {name: t_interval([run.metrics[name] for run in group], level) for name in METRICS},
                float(np.mean(times)) if times else None,
            )
        )
    settings.sort(key=lambda setting: [_order(value) for value in setting.values.values()])
    best = max(settings, key=lambda setting: setting.intervals[key].mean)
    best_scores = [run.metrics[key] for run in best.runs]
    for setting in settings:
        setting.best = setting is best
        setting.overlaps_best = setting.intervals[key].overlaps(best.intervals[key])
        if not setting.best:
            setting.p_vs_best = welch_p([run.metrics[key] for run in setting.runs], best_scores)
    for setting, adjusted in zip(settings, holm([setting.p_vs_best for setting in settings]), strict=True):
        setting.p_holm = adjusted
    return settings


def runs_from_hydra(sweep_dir: Path) -> list[SweepRun]:
    """Every finished point of a Hydra sweep directory (failed points are logged and left out, and so are a
    search's trials, which have no test metrics)."""
    runs = []
    for path in sorted(Path(sweep_dir).glob("*/run.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        record = json.loads(path.read_text())
        if "error" in record:
            log.warning("%s failed: %s", path.parent, record["error"])
            continue
        if "test" not in record:  # a search's trial (pruned or not): trained and validated, never tested
            log.info("%s: a search trial without test metrics, left out", path.parent)
            continue
        runs.append(
            SweepRun(
                name=f"{path.parent.name}: {' '.join(record['overrides'])}",
                params=flatten(record["params"]),
                metrics={name: record["test"][name] for name in METRICS},
                wall_time_s=record["train"].get("wall_time_s"),
                best_val_acc=record["train"].get("best_val_acc"),
            )
        )
    if not runs:
        raise DataError(f"{sweep_dir} has no finished sweep points (*/run.json)")
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
                        params=flatten(params),
                        metrics={name: test[name] for name in METRICS},
                        wall_time_s=train.get("wall_time_s"),
                        best_val_acc=train.get("best_val_acc"),
                    )
                )
    if not runs:
        raise DataError("`dvc exp show` lists no finished experiments with metrics/test.json")
    return runs


def swept_names(settings: list[Setting]) -> str:
    return " x ".join(settings[0].values) or "no swept parameter"


def plot_sweep(settings: list[Setting], path: Path, level: float = 0.95) -> None:
    """Accuracy and F1 (mean, t interval across seeds) per arm; every seed a faint dot; training time on a
    second axis."""
    from matplotlib.figure import Figure

    x = np.arange(len(settings), dtype=float)
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
            fmt="o",
            capsize=4,
            color=colour,
            label=f"test {name} (mean, {level:.0%} t interval)",
        )
        for position, setting in zip(x, settings, strict=True):  # every seed, faint, so the spread is visible too
            ax.scatter(
                [position + offset] * setting.n,
                [run.metrics[name] for run in setting.runs],
                s=10,
                color=colour,
                alpha=0.35,
            )
    best = next(position for position, setting in zip(x, settings, strict=True) if setting.best)
    ax.axvline(best, color="grey", linestyle=":", label=f"best: {settings[int(best)].label}")
    ax.set_xlabel(swept_names(settings))
    ax.set_ylabel("test score")
    ax.set_xticks(x, [setting.label.replace(" ", "\n") for setting in settings], fontsize=8)
    seeds = sorted({setting.n for setting in settings})
    ax.set_title(f"Sweep: {len(settings)} arms x {'/'.join(map(str, seeds))} seeds")
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
    """Runs (one row each), Settings (one row per arm; best highlighted; overlap and p-value against the best),
    a chart."""
    from posevit.evaluate.xlsx import column_series, reproducible_workbook, write_table

    workbook, styles = reproducible_workbook(path)
    keys = list(settings[0].values)
    params = range(1, len(keys) + 1)  # parameter values stay as the config writes them (lr 1e-05, not 0.0000)

    runs = workbook.add_worksheet("Runs")
    headers = ["run", *keys, "seed", *METRICS, "best_val_acc", "train_wall_time_s"]
    rows = [
        [
            run.name,
            *(cell_value(run.params[key]) for key in keys),
            run.seed,
            *(run.metrics[name] for name in METRICS),
            run.best_val_acc if run.best_val_acc is not None else "",
            run.wall_time_s if run.wall_time_s is not None else "",
        ]
        for setting in settings
        for run in setting.runs
    ]
    last = write_table(runs, styles, headers, rows, plain_columns={*params, len(headers) - 1})
    runs.set_column(0, 0, 48)
    runs.set_column(1, len(headers), 14)
    runs.autofilter(0, 0, last, len(headers) - 1)
    runs.freeze_panes(1, 0)

    sheet = workbook.add_worksheet("Settings")
    headers = ["arm", *keys, "seeds"]
    metric_col = len(headers)
    for name in METRICS:
        headers += [f"{name}_mean", f"{name}_ci_low", f"{name}_ci_high"]
    headers += ["p_vs_best (Welch)", "p_vs_best (Holm)", "train_wall_time_s", "best", "interval overlaps best"]
    rows = [
        [
            setting.label,
            *(cell_value(v) for v in setting.values.values()),
            setting.n,
            *(
                "n/a (1 seed)" if math.isnan(value) else value
                for name in METRICS
                for value in (setting.intervals[name].mean, setting.intervals[name].low, setting.intervals[name].high)
            ),
            *("" if math.isnan(p) else p for p in (setting.p_vs_best, setting.p_holm)),
            setting.wall_time_s if setting.wall_time_s is not None else "",
            "best" if setting.best else "",
            "yes" if setting.overlaps_best else "no",
        ]
        for setting in settings
    ]
    p_col = metric_col + 3 * len(METRICS)
    plain = {*params, p_col, p_col + 1, p_col + 2}  # p-values at full precision, seconds as measured
    best = {i for i, setting in enumerate(settings) if setting.best}
    write_table(sheet, styles, headers, rows, plain_columns=plain, highlighted=best)
    sheet.set_column(0, 0, 32)
    sheet.set_column(1, len(headers), 16)
    sheet.freeze_panes(1, 1)
    note = len(settings) + 2
    sheet.write(
        note,
        0,
        f"Intervals: {level:.0%} Student-t across seeds. 'overlaps best' = yes means the intervals cannot tell "
        f"this arm from the best one (accuracy); p_vs_best is Welch's two-sided t-test of the seeds' accuracy, "
        "and Holm its Holm-Bonferroni adjustment for the number of arms compared with the best.",
    )
    chart = workbook.add_chart({"type": "line"})
    for name, marker, col in (("accuracy", "circle", metric_col), ("f1_weighted", "square", metric_col + 3)):
        chart.add_series(column_series("Settings", col, len(settings), name=f"{name} (mean)", marker={"type": marker}))
    chart.set_title({"name": f"Test score per arm ({swept_names(settings)})"})
    chart.set_x_axis({"name": "arm"})
    sheet.insert_chart(note + 2, 0, chart)
    workbook.close()
