"""Choose usable source splits and cut stratified, seeded train/val/test splits."""

from __future__ import annotations

import logging

import datasets
import numpy as np

from posevit.core.errors import DataError
from posevit.data.store import LABELS

log = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
_VALIDATION_ALIASES = ("validation", "valid", "val", "dev")


def class_counts(split: datasets.Dataset) -> np.ndarray:
    """Images per class id, zeros included."""
    n_classes = split.features[LABELS].num_classes
    return np.bincount(np.asarray(split[LABELS], dtype=np.int64), minlength=n_classes)


def _train_split_name(source: datasets.DatasetDict) -> str:
    return "train" if "train" in source else max(source, key=lambda name: source[name].num_rows)


def find_collapsed_splits(source: datasets.DatasetDict) -> dict[str, str]:
    """Splits whose labels collapse to one class while the train split has several.

    The hub's Human_Action_Recognition `test` split labels every row `calling`: its
    labels are placeholders, and scoring against it would be meaningless.
    """
    train_name = _train_split_name(source)
    train_classes = int(np.count_nonzero(class_counts(source[train_name])))
    names = source[train_name].features[LABELS].names
    collapsed = {}
    for name, split in source.items():
        if name == train_name or split.num_rows == 0:
            continue
        present = np.flatnonzero(class_counts(split))
        if len(present) == 1 and train_classes > 1:
            collapsed[name] = (
                f"all {split.num_rows} rows are labelled {names[present[0]]!r} "
                f"while {train_name!r} has {train_classes} classes"
            )
    return collapsed


def _stratified_split(split: datasets.Dataset, size: float, seed: int, what: str) -> datasets.DatasetDict:
    try:
        return split.train_test_split(test_size=size, stratify_by_column=LABELS, seed=seed)
    except ValueError as exc:
        raise DataError(f"cannot cut a stratified {what} split: {exc}") from None


def make_splits(
    source: datasets.DatasetDict, test_size: float, validation_size: float, seed: int
) -> tuple[datasets.DatasetDict, dict[str, str]]:
    """Return ({train, val, test}, ignored splits with reasons).

    A usable source test/validation split is kept as is; a missing or collapsed one is
    re-sampled from train: first `test_size` of train for test, then `validation_size`
    of the rest for val, both stratified by class and seeded.
    """
    ignored = find_collapsed_splits(source)
    for name, reason in ignored.items():
        log.warning("ignoring source split %r: %s; re-sampling it from train", name, reason)
    usable = {name: split for name, split in source.items() if name not in ignored}
    train = usable[_train_split_name(source)]

    test = usable.get("test")
    if test is None:
        cut = _stratified_split(train, test_size, seed, "test")
        train, test = cut["train"], cut["test"]

    val = next((usable[name] for name in _VALIDATION_ALIASES if name in usable), None)
    if val is None:
        cut = _stratified_split(train, validation_size, seed, "validation")
        train, val = cut["train"], cut["test"]

    return datasets.DatasetDict({"train": train, "val": val, "test": test}), ignored


def check_class_coverage(splits: datasets.DatasetDict) -> None:
    """Every class must appear in every split, or metrics for it are undefined."""
    names = splits["train"].features[LABELS].names
    for split_name, split in splits.items():
        for class_id in np.flatnonzero(class_counts(split) == 0):
            total = sum(int(class_counts(s)[class_id]) for s in splits.values())
            raise DataError(
                f"class {names[class_id]!r} has no images in the {split_name!r} split "
                f"({total} in all splits): add images of it, or adjust data.test_size / data.validation_size"
            )
