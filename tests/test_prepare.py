"""Stratified, seeded splits with every class everywhere; collapsed source splits; odd files."""

from __future__ import annotations

import io
import logging
from collections import Counter

import datasets
import numpy as np
import pytest
from PIL import Image

from posevit.core.config import DataConfig
from posevit.core.errors import DataError
from posevit.core.labels import ACTION_CLASSES
from posevit.data.prepare import prepare_data
from posevit.data.splits import check_class_coverage, class_counts, make_splits
from tests.helpers.images import action_dataset, balanced_labels

N_CLASSES = len(ACTION_CLASSES)


def test_splits_are_stratified_disjoint_and_cover_every_class():
    source = datasets.DatasetDict(
        {"train": action_dataset(balanced_labels(20)).add_column("id", [str(i) for i in range(300)])}
    )
    splits, ignored = make_splits(source, test_size=0.2, validation_size=0.25, seed=42)
    assert ignored == {}
    assert class_counts(splits["test"]).tolist() == [4] * N_CLASSES
    assert class_counts(splits["val"]).tolist() == [4] * N_CLASSES
    assert class_counts(splits["train"]).tolist() == [12] * N_CLASSES
    ids = [set(splits[name]["id"]) for name in ("train", "val", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert set().union(*ids) == {str(i) for i in range(300)}
    check_class_coverage(splits)


def test_same_seed_same_splits_other_seed_other_splits():
    source = datasets.DatasetDict(
        {"train": action_dataset(balanced_labels(10)).add_column("id", [str(i) for i in range(150)])}
    )
    first, _ = make_splits(source, 0.2, 0.2, seed=7)
    again, _ = make_splits(source, 0.2, 0.2, seed=7)
    other, _ = make_splits(source, 0.2, 0.2, seed=8)
    assert first["test"]["id"] == again["test"]["id"] and first["val"]["id"] == again["val"]["id"]
    assert first["test"]["id"] != other["test"]["id"]


def test_a_class_missing_from_a_split_is_named():
    labels = balanced_labels(10)
    splits = datasets.DatasetDict(
        {
            "train": action_dataset(labels),
            "val": action_dataset(labels),
            "test": action_dataset([label for label in labels if label != 9]),
        }
    )
    with pytest.raises(DataError, match=r"class 'listening_to_music' has no images in the 'test' split"):
        check_class_coverage(splits)


def test_too_few_images_for_a_stratified_split_is_a_clear_error():
    source = datasets.DatasetDict({"train": action_dataset(balanced_labels(2))})
    with pytest.raises(DataError, match="stratified test split"):
        make_splits(source, test_size=0.1, validation_size=0.2, seed=0)


def write_hub_format(directory, splits: dict[str, datasets.Dataset]) -> None:
    """A local copy of a hub dataset repo: data/<split>-00000-of-00001.parquet, features embedded."""
    (directory / "data").mkdir(parents=True)
    for name, split in splits.items():
        split.to_parquet(str(directory / "data" / f"{name}-00000-of-00001.parquet"))


def test_one_class_test_split_is_detected_dropped_and_resampled(tmp_path, caplog):
    repo = tmp_path / "Human_Action_Recognition"
    write_hub_format(
        repo,
        {
            "train": action_dataset(balanced_labels(8), seed=1),
            "test": action_dataset([0] * 30, seed=2),  # like the hub: every row 'calling'
        },
    )
    cfg = DataConfig(name=str(repo), test_size=0.25, validation_size=0.25, num_proc=1)
    with caplog.at_level(logging.WARNING):
        prepared = prepare_data(cfg)
    assert "ignoring source split 'test'" in caplog.text
    assert prepared.ignored_splits == {"test": "all 30 rows are labelled 'calling' while 'train' has 15 classes"}
    splits = prepared.splits
    assert all(class_counts(splits[name]).min() >= 1 for name in ("train", "val", "test"))
    assert sum(splits[name].num_rows for name in ("train", "val", "test")) == 8 * N_CLASSES
    assert all(image_id.startswith("train/") for image_id in splits["test"]["id"])
    assert splits["train"].features["labels"].names == list(ACTION_CLASSES)


def _file(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_image_folder_with_odd_modes_and_a_truncated_file(tmp_path):
    rng = np.random.default_rng(0)
    modes = ["L", "LA", "RGBA", "P", "CMYK", "RGB"]
    for class_name in ACTION_CLASSES[:3]:
        folder = tmp_path / "photos" / class_name
        folder.mkdir(parents=True)
        for i, mode in enumerate(modes * 2):
            noise = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).convert(mode)
            fmt = "JPEG" if mode in ("CMYK", "RGB") else "PNG"
            (folder / f"{i:02d}.{fmt.lower()}").write_bytes(_file(noise, fmt))
    broken = _file(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "JPEG")
    (tmp_path / "photos" / "clapping" / "broken.jpeg").write_bytes(broken[: len(broken) // 2])

    prepared = prepare_data(
        DataConfig(
            name=str(tmp_path / "photos"), label_column="label", test_size=0.25, validation_size=0.25, num_proc=1
        )
    )

    assert len(prepared.dropped) == 1
    assert prepared.dropped[0]["source"].endswith("broken.jpeg") and "cannot decode" in prepared.dropped[0]["reason"]
    splits = prepared.splits
    assert sum(s.num_rows for s in splits.values()) == 3 * 12
    assert splits["train"].features["labels"].names == ["calling", "clapping", "cycling"]
    assert {splits[name][i]["image"].mode for name in splits for i in range(splits[name].num_rows)} == {"RGB"}
    assert Counter(prepared.image_stats["mode"]) == Counter({mode: 6 for mode in modes})
