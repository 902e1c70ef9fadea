"""Summarise a sweep arm by arm (seeds are the sample): a table, plots/sweep.png and reports/sweep.xlsx.

python -m posevit.sweep.report --hydra multirun/2026-11-24/19-40-00   # a Hydra sweep directory
python -m posevit.sweep.report --dvc-exp                              # runs `dvc exp show --json`
python -m posevit.sweep.report --dvc-exp-json exps.json               # saved `dvc exp show --json`
python -m posevit.sweep.report --dvc-exp --by model.freeze_blocks     # arms of chosen keys only
python -m posevit.sweep.report --optuna multirun/search/posevit       # an Optuna search (hparams_search=optuna)

With --optuna: the study's best trial, trial counts, parameter importances and Optuna's plots (plots/), then the
best setting re-run with --seeds fresh seeds on the test split (the search selected on val), summarised as an arm.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from posevit.core.entrypoint import run_stage
from posevit.core.paths import SWEEP_PLOT, SWEEP_WORKBOOK
from posevit.sweep.summary import (
    METRICS,
    Setting,
    plot_sweep,
    runs_from_dvc_exp,
    runs_from_hydra,
    summarise,
    swept_names,
    write_workbook,
)


def format_table(settings: list[Setting], runs: int, level: float = 0.95) -> str:
    """One line per arm: mean [t interval] of each metric, Welch's p against the best (raw and Holm-adjusted),
    training time."""
    width = max(len("arm"), *(len(setting.label) for setting in settings))
    lines = [
        f"{runs} runs, {len(settings)} arms of {swept_names(settings)} ({level:.0%} t intervals across seeds):",
        f"{'arm':<{width}} {'seeds':>5}  "
        + "  ".join(f"{name:>24}" for name in METRICS)
        + "  p vs best       Holm  train s",
    ]
    for setting in settings:
        cells = []
        for name in METRICS:
            i = setting.intervals[name]
            cells.append(f"{i.mean:.4f} [{i.low:.4f}, {i.high:.4f}]".rjust(24))
        flag = "  <- best" if setting.best else ("  (within the best's interval)" if setting.overlaps_best else "")
        p = "  ".join("        -" if math.isnan(v) else f"{v:9.3f}" for v in (setting.p_vs_best, setting.p_holm))
        time = f"{setting.wall_time_s:7.1f}" if setting.wall_time_s is not None else "      -"
        lines.append(f"{setting.label:<{width}} {setting.n:>5}  " + "  ".join(cells) + f"  {p}  {time}{flag}")
    return "\n".join(lines)


def report_search(args: argparse.Namespace) -> None:
    """--optuna: the study, its plots, and the best setting's test accuracy across fresh seeds."""
    from posevit.sweep import study_report

    study = study_report.open_study(args.optuna, args.study)
    summary = study_report.summarise_study(study)
    print(study_report.format_study(summary))
    plots = study_report.plot_study(study, args.plots_dir, summary.importances)
    print(f"wrote {', '.join(map(str, plots))}")
    if not args.seeds:
        return
    source = Path(args.optuna)
    out_dir = source / "best" if source.is_dir() else Path("multirun") / "search" / study.study_name / "best"
    overrides = study_report.trial_overrides(summary.best)
    seeds = study_report.rerun_seeds(overrides, args.seeds)
    print(
        f"re-running trial {summary.best.number}'s setting with train.seed={','.join(map(str, seeds))} "
        f"on the test split -> {out_dir}"
    )
    runs = study_report.rerun_on_test(summary.best, seeds, out_dir)
    settings = summarise(runs, args.level)
    print(format_table(settings, len(runs), args.level))
    accuracy = settings[0].intervals["accuracy"]
    print(
        f"test accuracy of the best setting: {accuracy.mean:.4f} [{accuracy.low:.4f}, {accuracy.high:.4f}] "
        f"({len(runs)} seeds, {args.level:.0%} t interval; the search's {study_report.MONITOR} "
        f"{summary.best.value:.4f} was the figure it selected on)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hydra", type=Path, help="a sweep directory of `python -m posevit.sweep --multirun`")
    source.add_argument("--dvc-exp", action="store_true", help="the experiments `dvc exp show` lists")
    source.add_argument("--dvc-exp-json", type=Path, help="a saved `dvc exp show --json`")
    source.add_argument(
        "--optuna", help="an Optuna search: its sweep directory (multirun/search/<study>), .db file or storage URL"
    )
    parser.add_argument("--study", help="with --optuna: the study's name (default: the storage's only study)")
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="with --optuna: re-run the best setting with this many fresh seeds on the test split (0: no re-run)",
    )
    parser.add_argument("--plots-dir", type=Path, default=Path("plots"), help="with --optuna: where the plots go")
    parser.add_argument("--plot", type=Path, default=SWEEP_PLOT)
    parser.add_argument("--workbook", type=Path, default=SWEEP_WORKBOOK)
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    parser.add_argument(
        "--by",
        type=lambda text: [key.strip() for key in text.split(",") if key.strip()],
        help="comma-separated dotted keys that define an arm (default: every key that differs between runs, "
        "train.seed aside)",
    )
    args = parser.parse_args(argv)

    if args.optuna:
        report_search(args)
        return
    if args.hydra:
        runs = runs_from_hydra(args.hydra)
    else:
        text = (
            args.dvc_exp_json.read_text()
            if args.dvc_exp_json
            else subprocess.run(
                [sys.executable, "-m", "dvc", "exp", "show", "--json"], check=True, capture_output=True, text=True
            ).stdout
        )
        runs = runs_from_dvc_exp(json.loads(text))
    settings = summarise(runs, args.level, by=args.by)
    plot_sweep(settings, args.plot, args.level)
    write_workbook(settings, args.workbook, args.level)

    print(format_table(settings, len(runs), args.level))
    print(f"wrote {args.plot} and {args.workbook}")


if __name__ == "__main__":
    run_stage(main)
