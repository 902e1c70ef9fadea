"""What the processed data holds: `metrics/data.json` and the table printed beside it."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from posevit.data.prepare import PreparedData
from posevit.data.splits import class_counts
from posevit.data.store import class_names


def _describe(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"min": 0, "median": 0, "mean": 0, "max": 0}
    return {
        "min": int(values.min()),
        "median": float(np.median(values)),
        "mean": round(float(values.mean()), 2),
        "max": int(values.max()),
    }


def summarise(prepared: PreparedData, source_name: str) -> dict[str, Any]:
    """What was read (its identity), per-class counts per split, image size statistics, dropped images, ignored
    splits."""
    splits = prepared.splits
    names = class_names(splits["train"])
    per_split = {}
    for split_name, split in splits.items():
        counts = class_counts(split)
        per_split[split_name] = {
            "total": int(counts.sum()),
            "per_class": {name: int(n) for name, n in zip(names, counts, strict=True)},
        }
    stats = prepared.image_stats
    return {
        "source": source_name,
        "identity": prepared.identity,
        "num_classes": len(names),
        "classes": names,
        "splits": per_split,
        "image_size": {
            "width": _describe(np.asarray(stats["width"])),
            "height": _describe(np.asarray(stats["height"])),
        },
        "source_modes": dict(sorted(Counter(stats["mode"]).items())),
        "dropped": {"count": len(prepared.dropped), "images": prepared.dropped},
        "ignored_splits": prepared.ignored_splits,
    }


def format_table(summary: dict[str, Any]) -> str:
    """The per-class counts as a fixed-width table, one row per class plus a total."""
    splits = list(summary["splits"])
    width = max(len(name) for name in [*summary["classes"], "total"])
    header = f"{'class':<{width}}" + "".join(f"{name:>8}" for name in splits) + f"{'all':>8}"
    rows = [header, "-" * len(header)]
    for name in summary["classes"]:
        counts = [summary["splits"][s]["per_class"][name] for s in splits]
        rows.append(f"{name:<{width}}" + "".join(f"{n:>8}" for n in counts) + f"{sum(counts):>8}")
    totals = [summary["splits"][s]["total"] for s in splits]
    rows += ["-" * len(header), f"{'total':<{width}}" + "".join(f"{n:>8}" for n in totals) + f"{sum(totals):>8}"]
    size = summary["image_size"]
    rows.append(
        f"image size: width {size['width']['min']}-{size['width']['max']} (median {size['width']['median']:g}), "
        f"height {size['height']['min']}-{size['height']['max']} (median {size['height']['median']:g})"
    )
    rows.append(f"dropped images: {summary['dropped']['count']}")
    identity = summary.get("identity") or {}
    read = identity.get("resolved_revision") or identity.get("content_hash")
    if read:
        rows.append(f"read: {identity['kind']} {identity['name']} at {read}")
    for split_name, reason in summary["ignored_splits"].items():
        rows.append(f"ignored source split {split_name!r}: {reason}")
    return "\n".join(rows)
