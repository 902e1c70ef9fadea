"""Processed splits on disk (`data/processed/{train,val,test}`, HF `save_to_disk` format)."""

from __future__ import annotations

import shutil
from pathlib import Path

import datasets

from posevit.errors import DataError

PROCESSED_DIR = Path("data/processed")


def save_splits(splits: datasets.DatasetDict, directory: Path = PROCESSED_DIR) -> None:
    """Write all splits next to `directory`, then swap it in: a killed run leaves the old data."""
    staging = directory.with_name(directory.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    splits.save_to_disk(str(staging), num_proc=1)
    shutil.rmtree(directory, ignore_errors=True)
    staging.rename(directory)


def load_split(name: str, directory: Path = PROCESSED_DIR) -> datasets.Dataset:
    """One processed split, or a DataError saying which stage makes it."""
    path = directory / name
    if not (path / "state.json").exists():
        raise DataError(f"{path} not found: run the preprocess stage first (`dvc repro preprocess`)")
    return datasets.load_from_disk(str(path))
