"""Processed splits on disk (`data/processed/{train,val,test}`, HF `save_to_disk` format)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets

from posevit.core.errors import DataError
from posevit.core.paths import PROCESSED_DIR

# The columns of a processed split, and the batch key of the transformed images.
IMAGE, LABELS, ID = "image", "labels", "id"
PIXELS = "pixels"


def save_splits(splits: datasets.DatasetDict, directory: Path = PROCESSED_DIR) -> None:
    """Write all splits next to `directory`, then swap it in: a killed run leaves the old data."""
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    # num_proc=None writes in this process: datasets spawns a pool for any num_proc >= 1, and a spawned
    # worker imports the whole stage again (torch included) for each split.
    splits.save_to_disk(str(staging), num_proc=None)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def class_names(split: datasets.Dataset) -> list[str]:
    """The class names of a split, in label-id order."""
    return list(split.features[LABELS].names)


def load_split(name: str, directory: Path = PROCESSED_DIR) -> datasets.Dataset:
    """One processed split, or a DataError saying which stage makes it."""
    path = directory / name
    if not (path / "state.json").exists():
        raise DataError(f"{path} not found: run the preprocess stage first (`dvc repro preprocess`)")
    return datasets.load_from_disk(str(path))


def with_pixels(split: datasets.Dataset, transform: Callable) -> datasets.Dataset:
    """Decode and transform images lazily, per access (each epoch draws new augmentations)."""

    def apply(batch: dict[str, list[Any]]) -> dict[str, Any]:
        return {PIXELS: [transform(image) for image in batch[IMAGE]], LABELS: batch[LABELS]}

    return split.with_transform(apply, columns=[IMAGE, LABELS])
