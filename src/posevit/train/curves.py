"""`plots/training_curves.png` from the per-epoch metrics DVCLive recorded."""

from __future__ import annotations

import csv
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend, safe in any process


def read_dvclive_series(live_dir: Path, name: str) -> tuple[list[float], list[float]]:
    """(steps, values) of metric `name` (e.g. `train/loss`) from DVCLive's TSV."""
    path = live_dir / "plots" / "metrics" / f"{name}.tsv"
    if not path.is_file():
        return [], []
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    column = name.rsplit("/", 1)[-1]
    return [float(row["step"]) for row in rows], [float(row[column]) for row in rows]


def plot_training_curves(live_dir: Path, output: Path) -> None:
    """Loss and accuracy per epoch, train against val."""
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "acc"), strict=True):
        for stage, style in (("train", "-o"), ("val", "-s")):
            steps, values = read_dvclive_series(live_dir, f"{stage}/{metric}")
            ax.plot(range(1, len(values) + 1), values, style, markersize=3, label=stage)
        ax.set_xlabel("epoch")
        ax.set_title({"loss": "loss", "acc": "accuracy"}[metric])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=90, metadata={"Software": None})
