"""A contact sheet of the processed data: every class, a few samples each."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend, safe in any process

from posevit.data.store import IMAGE, LABELS, class_names


def save_contact_sheet(split: datasets.Dataset, path: Path, per_class: int = 6) -> None:
    """One row per class with up to `per_class` images from `split` (first ones, deterministic)."""
    names = class_names(split)
    labels = np.asarray(split[LABELS])
    fig = Figure(figsize=(per_class * 1.1 + 1.6, len(names) * 1.1))
    axes = fig.subplots(len(names), per_class, squeeze=False)
    for class_id, name in enumerate(names):
        rows = np.flatnonzero(labels == class_id)[:per_class]
        for column, ax in enumerate(axes[class_id]):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if column < len(rows):
                ax.imshow(split[int(rows[column])][IMAGE])
        axes[class_id][0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(f"{len(split)} training images, {len(names)} classes", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, metadata={"Software": None})
