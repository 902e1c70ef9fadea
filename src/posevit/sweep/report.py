"""Summarise a frozen-block sweep: plots/freeze_sweep.png and reports/freeze_sweep.xlsx.

python -m posevit.sweep.report --hydra multirun/2026-11-24/19-40-00   # a Hydra sweep directory
python -m posevit.sweep.report --dvc-exp                              # runs `dvc exp show --json`
python -m posevit.sweep.report --dvc-exp-json exps.json               # saved `dvc exp show --json`
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from posevit.core.entrypoint import run_stage
from posevit.core.paths import SWEEP_PLOT, SWEEP_WORKBOOK
from posevit.sweep.summary import METRICS, plot_sweep, runs_from_dvc_exp, runs_from_hydra, summarise, write_workbook


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hydra", type=Path, help="a sweep directory of `python -m posevit.sweep --multirun`")
    source.add_argument("--dvc-exp", action="store_true", help="the experiments `dvc exp show` lists")
    source.add_argument("--dvc-exp-json", type=Path, help="a saved `dvc exp show --json`")
    parser.add_argument("--plot", type=Path, default=SWEEP_PLOT)
    parser.add_argument("--workbook", type=Path, default=SWEEP_WORKBOOK)
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of the intervals")
    args = parser.parse_args(argv)

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
    settings = summarise(runs, args.level)
    plot_sweep(settings, args.plot, args.level)
    write_workbook(settings, args.workbook, args.level)

    print(f"{len(runs)} runs, {len(settings)} settings ({args.level:.0%} t intervals across seeds):")
    print(f"{'frozen':>6} {'seeds':>5}  " + "  ".join(f"{name:>24}" for name in METRICS) + "  train s")
    for setting in settings:
        cells = []
        for name in METRICS:
            i = setting.intervals[name]
            cells.append(f"{i.mean:.4f} [{i.low:.4f}, {i.high:.4f}]".rjust(24))
        flag = "  <- best" if setting.best else ("  (within the best's interval)" if setting.overlaps_best else "")
        time = f"{setting.wall_time_s:7.1f}" if setting.wall_time_s is not None else "      -"
        print(f"{setting.freeze_blocks:>6} {setting.n:>5}  " + "  ".join(cells) + f"  {time}{flag}")
    print(f"wrote {args.plot} and {args.workbook}")


if __name__ == "__main__":
    run_stage(main)
