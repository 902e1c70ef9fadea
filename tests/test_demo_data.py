"""The embedded demo dataset: hub schema, every class, deterministic from its seed."""

from __future__ import annotations

import datasets

from posevit.core.config import DataConfig, DemoDataConfig
from posevit.core.labels import ACTION_CLASSES
from posevit.data.demo import generate_demo_images, render_sample, sample_rng
from posevit.data.sources import demo_dataset


def _bytes(cfg: DataConfig) -> list[bytes]:
    return [
        row["bytes"] for row in demo_dataset(cfg)["train"].cast_column("image", datasets.Image(decode=False))["image"]
    ]


def test_demo_has_the_hub_schema_and_every_class():
    split = demo_dataset(DataConfig(name="demo", demo=DemoDataConfig(images_per_class=3, image_size=64)))["train"]
    assert split.features["labels"] == datasets.ClassLabel(names=list(ACTION_CLASSES))
    assert isinstance(split.features["image"], datasets.Image)
    assert sorted(split["labels"]) == sorted(list(range(15)) * 3)
    image = split[0]["image"]
    assert image.mode == "RGB" and image.size == (64, 64)


def test_same_seed_same_bytes_other_seed_other_images():
    cfg = DataConfig(name="demo", num_proc=2, demo=DemoDataConfig(images_per_class=3, image_size=48, seed=5))
    assert _bytes(cfg) == _bytes(cfg.model_copy(update={"num_proc": 1}))  # parallel drawing changes nothing
    other = cfg.model_copy(update={"demo": DemoDataConfig(images_per_class=3, image_size=48, seed=6)})
    assert _bytes(cfg) != _bytes(other)


def test_each_sample_is_independent_of_generation_order():
    images = list(generate_demo_images(1, 48, seed=9))
    assert [label for _, label in images] == list(range(15))
    assert render_sample(7, sample_rng(9, 7), 48).tobytes() == images[7][0].tobytes()
