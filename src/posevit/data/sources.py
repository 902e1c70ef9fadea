"""Load the raw dataset named by `data.name` into a DatasetDict with `image` and `labels`.

`data.name` may be:
- `demo`: the embedded procedural dataset (no download);
- a directory written by `save_to_disk` (has `dataset_dict.json` or `state.json`);
- a hub dataset id (`Bingsu/Human_Action_Recognition`), or a local directory in a
  format `datasets.load_dataset` reads: a copy of a hub repo (parquet files) or an
  image folder with one sub-folder per class.
Images come back undecoded (bytes) so one broken file cannot stop the load, with the identity of what was read
(`posevit.data.identity`).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from tqdm.auto import tqdm

from posevit.core.config import DataConfig
from posevit.core.errors import DataError
from posevit.core.labels import ACTION_CLASSES
from posevit.data.demo import render_sample, sample_rng
from posevit.data.identity import demo_identity, hub_identity, local_identity, saved_identity
from posevit.data.store import IMAGE, LABELS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedSource:
    splits: datasets.DatasetDict
    identity: dict[str, Any]  # what was read: hub commit, content hash or demo settings


def _draw_png(job: tuple[int, int, int]) -> bytes:
    """Sample `index` of the demo set, PNG-encoded (each sample has its own RNG stream)."""
    index, image_size, seed = job
    image = render_sample(index % len(ACTION_CLASSES), sample_rng(seed, index), image_size)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def demo_dataset(cfg: DataConfig) -> datasets.DatasetDict:
    """Draw the embedded demo dataset (deterministic from `data.demo.seed`, in `data.num_proc` processes)."""
    demo = cfg.demo
    total = demo.images_per_class * len(ACTION_CLASSES)
    jobs = [(index, demo.image_size, demo.seed) for index in range(total)]
    with ProcessPoolExecutor(max_workers=cfg.num_proc) as pool:
        encoded = list(
            tqdm(pool.map(_draw_png, jobs, chunksize=64), total=total, desc="drawing demo images", unit="img")
        )
    images = [{"bytes": data, "path": None} for data in encoded]
    labels = [index % len(ACTION_CLASSES) for index in range(total)]
    features = datasets.Features({IMAGE: datasets.Image(), LABELS: datasets.ClassLabel(names=list(ACTION_CLASSES))})
    return datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict({IMAGE: images, LABELS: labels}, features=features)}
    )


def _is_saved_to_disk(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def saved_dataset(cfg: DataConfig) -> datasets.DatasetDict:
    loaded = datasets.load_from_disk(cfg.name)
    return loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})


def hub_or_local_dataset(cfg: DataConfig) -> LoadedSource:
    """What `datasets.load_dataset` does (a hub id, a local hub-format copy, or an image folder), through its
    builder, which knows the commit it resolved and the files it read."""
    if _looks_like_path(cfg.name) and not Path(cfg.name).exists():
        raise DataError(
            f"data.name={cfg.name!r}: no such directory. Point it at a dataset directory, "
            "an image folder (one sub-folder per class), a hub id, or use data=demo."
        )
    try:
        builder = datasets.load_dataset_builder(cfg.name, revision=cfg.revision)
        builder.download_and_prepare()
        loaded = builder.as_dataset()
    except Exception as exc:
        raise DataError(
            f"data.name={cfg.name!r} could not be loaded: {type(exc).__name__}: {exc}\n"
            "  Offline? Copy the dataset to a local directory (the hub repo's files, or "
            "`save_to_disk`) and set data.name to that path, or use data=demo."
        ) from None
    splits = loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
    identity = local_identity(cfg, builder) if Path(cfg.name).is_dir() else hub_identity(cfg, builder)
    return LoadedSource(splits, identity)


def _looks_like_path(name: str) -> bool:
    # Hub ids are `owner/name` (or a bare legacy name); anything else is meant as a path.
    return name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1


Loader = Callable[[DataConfig], LoadedSource]


def pick_loader(name: str) -> Loader:
    """Which loader reads `data.name`."""
    if name == "demo":
        return lambda cfg: LoadedSource(demo_dataset(cfg), demo_identity(cfg))
    if Path(name).is_dir() and _is_saved_to_disk(Path(name)):
        return lambda cfg: LoadedSource(saved_dataset(cfg), saved_identity(cfg))
    return hub_or_local_dataset


def _standardise(split: datasets.Dataset, cfg: DataConfig, split_name: str) -> datasets.Dataset:
    """Rename the configured columns to `image`/`labels`, keep only those, undecoded."""
    columns = split.column_names
    for key, column in (("data.image_column", cfg.image_column), ("data.label_column", cfg.label_column)):
        if column not in columns:
            raise DataError(f"{key}={column!r} is not a column of split {split_name!r} (columns: {columns})")
    split = split.select_columns([cfg.image_column, cfg.label_column])
    split = split.rename_columns({c: n for c, n in ((cfg.image_column, IMAGE), (cfg.label_column, LABELS)) if c != n})
    if not isinstance(split.features[IMAGE], datasets.Image):
        raise DataError(
            f"column {cfg.image_column!r} of split {split_name!r} holds {split.features[IMAGE]}, not images"
        )
    if not isinstance(split.features[LABELS], datasets.ClassLabel):
        split = split.class_encode_column(LABELS)
    return split.cast_column(IMAGE, datasets.Image(decode=False))


def load_source(cfg: DataConfig) -> LoadedSource:
    """Load `data.name` as a DatasetDict of splits with `image` (bytes) and `labels` (ClassLabel), and its identity."""
    loaded = pick_loader(cfg.name)(cfg)
    raw = loaded.splits
    if not raw:
        raise DataError(f"data.name={cfg.name!r} has no splits")
    splits = {name: _standardise(split, cfg, name) for name, split in raw.items()}
    names = {name: split.features[LABELS].names for name, split in splits.items()}
    reference = next(iter(names.values()))
    for name, labels in names.items():
        if labels != reference:
            raise DataError(f"split {name!r} has labels {labels}, other splits {reference}: they must agree")
    return LoadedSource(datasets.DatasetDict(splits), loaded.identity)
