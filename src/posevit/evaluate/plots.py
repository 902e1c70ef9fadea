"""Evaluation plots: normalised confusion matrix and per-class accuracy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend, safe in any process


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})


def plot_confusion_matrix(matrix: np.ndarray, names: list[str], path: Path) -> None:
    """Row-normalised: each row shows where the images of one true class went."""
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(9, 8))
    ax = fig.subplots()
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for (i, j), value in np.ndenumerate(normalised):
        if value >= 0.01:
            ax.text(
                j, i, f"{value:.2f}", ha="center", va="center", fontsize=6, color="white" if value > 0.6 else "black"
            )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title("Confusion matrix (row-normalised)")
    _save(fig, path)


def plot_per_class_accuracy(per_class: list[dict[str, Any]], overall: float, path: Path) -> None:
    """Horizontal bars, worst class at the top, overall accuracy as a line."""
    ordered = sorted(per_class, key=lambda entry: entry["accuracy"])
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    ax.barh([e["class"] for e in ordered], [e["accuracy"] for e in ordered], color="#4472C4")
    ax.axvline(overall, color="#C00000", linestyle="--", label=f"overall {overall:.3f}")
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy (recall of the class)")
    ax.set_title("Per-class accuracy on the test split")
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def reliability_bins(probabilities: np.ndarray, targets: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Per confidence bin: mean confidence, accuracy and count (the terms of the expected calibration error)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == targets
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # (lo, hi] bins, as torchmetrics
    counts = np.bincount(index, minlength=bins)
    mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / np.maximum(counts, 1)
    accuracy = np.bincount(index, weights=correct, minlength=bins) / np.maximum(counts, 1)
    return mean_confidence, accuracy, counts


def plot_reliability(
    calibrated: np.ndarray, uncalibrated: np.ndarray, targets: np.ndarray, temperature: float, path: Path, bins: int
) -> None:
    """Accuracy against confidence per bin, before and after temperature scaling; the diagonal is perfect."""
    fig = Figure(figsize=(6.5, 6))
    ax = fig.subplots()
    edges = np.linspace(0, 1, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    for probabilities, label, colour, offset in (
        (uncalibrated, "before (T = 1)", "#A5A5A5", -0.25),
        (calibrated, f"after (T = {temperature:.2f})", "#4472C4", 0.25),
    ):
        _, accuracy, counts = reliability_bins(probabilities, targets, bins)
        shown = counts > 0
        ax.bar(centres[shown] + offset / bins, accuracy[shown], width=0.5 / bins, color=colour, label=label)
    ax.plot([0, 1], [0, 1], color="#C00000", linestyle="--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top-1 probability)")
    ax.set_ylabel("accuracy of the images in the bin")
    ax.set_title("Reliability on the test split")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    _save(fig, path)
