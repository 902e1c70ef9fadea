"""Raw dataset -> normalised, stratified train/val/test splits (the preprocess stage's work)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets

from posevit.core.config import DataConfig
from posevit.core.errors import ImageError
from posevit.data.images import normalise_image
from posevit.data.sources import load_source
from posevit.data.splits import check_class_coverage, make_splits
from posevit.data.store import ID, IMAGE, LABELS

log = logging.getLogger(__name__)

_SCRATCH = ("ok", "reason", "width", "height", "mode")


@dataclass
class PreparedData:
    splits: datasets.DatasetDict  # train / val / test with image, labels, id
    image_stats: datasets.Dataset  # width, height, mode of every kept source image
    dropped: list[dict[str, str]] = field(default_factory=list)  # id, source, reason
    ignored_splits: dict[str, str] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)  # what was read (`posevit.data.identity`)


def _normalise_batch(batch: dict[str, list], indices: list[int], split_name: str, max_pixels: int) -> dict[str, list]:
    out: dict[str, list[Any]] = {IMAGE: [], ID: [], "ok": [], "reason": [], "width": [], "height": [], "mode": []}
    for image, index in zip(batch[IMAGE], indices, strict=True):
        out[ID].append(f"{split_name}/{index}")
        try:
            data = image["bytes"] if image["bytes"] is not None else Path(image["path"]).read_bytes()
            normalised = normalise_image(data, max_pixels)
        except (ImageError, OSError) as exc:
            out[IMAGE].append({"bytes": None, "path": image.get("path")})
            out["ok"].append(False)
            out["reason"].append(str(exc))
            out["width"].append(0)
            out["height"].append(0)
            out["mode"].append("")
            continue
        out[IMAGE].append({"bytes": normalised.data, "path": None})
        out["ok"].append(True)
        out["reason"].append("")
        out["width"].append(normalised.width)
        out["height"].append(normalised.height)
        out["mode"].append(normalised.original_mode)
    return out


def _processes(num_proc: int, rows: int) -> int | None:
    """Workers for `map`: one per 256 rows up to `data.num_proc`, or None (this process) when one would do,
    since datasets starts a pool for any num_proc >= 1."""
    workers = min(num_proc, rows // 256)
    return workers if workers > 1 else None


def normalise_split(
    split: datasets.Dataset, split_name: str, cfg: DataConfig
) -> tuple[datasets.Dataset, list[dict[str, str]]]:
    """Decode every image once; return the kept rows and the dropped ones with reasons."""
    features = datasets.Features(
        {
            IMAGE: datasets.Image(decode=False),
            LABELS: split.features[LABELS],
            ID: datasets.Value("string"),
            "ok": datasets.Value("bool"),
            "reason": datasets.Value("string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "mode": datasets.Value("string"),
        }
    )
    mapped = split.map(
        _normalise_batch,
        batched=True,
        batch_size=64,
        with_indices=True,
        features=features,
        fn_kwargs={"split_name": split_name, "max_pixels": cfg.max_image_pixels},
        num_proc=_processes(cfg.num_proc, split.num_rows),
        desc=f"normalising {split_name} images",
    )
    bad = mapped.filter(lambda ok: not ok, input_columns="ok")
    dropped = [{ID: row[ID], "source": row[IMAGE]["path"] or "", "reason": row["reason"]} for row in bad]
    kept = mapped.filter(lambda ok: ok, input_columns="ok") if dropped else mapped
    return kept, dropped


def prepare_data(cfg: DataConfig) -> PreparedData:
    """Load `data.name`, normalise every image, and cut stratified train/val/test splits."""
    loaded = load_source(cfg)
    normalised, dropped = {}, []
    for name, split in loaded.splits.items():
        normalised[name], split_dropped = normalise_split(split, name, cfg)
        dropped.extend(split_dropped)
    if dropped:
        log.warning(
            "dropped %d undecodable image(s): %s",
            len(dropped),
            ", ".join(f"{d['id']} ({d['reason']})" for d in dropped[:20]) + (" ..." if len(dropped) > 20 else ""),
        )

    stats = datasets.concatenate_datasets(
        [split.select_columns(["width", "height", "mode"]) for split in normalised.values()]
    )
    splits, ignored = make_splits(datasets.DatasetDict(normalised), cfg.test_size, cfg.validation_size, cfg.seed)
    splits = datasets.DatasetDict(
        {
            name: split.remove_columns(list(_SCRATCH)).cast_column(IMAGE, datasets.Image())
            for name, split in splits.items()
        }
    )
    check_class_coverage(splits)
    return PreparedData(
        splits=splits, image_stats=stats, dropped=dropped, ignored_splits=ignored, identity=loaded.identity
    )
