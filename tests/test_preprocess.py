"""The ONNX backends' PIL + NumPy eval transform gives the very pixels timm's eval transform gives."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from posevit.core.errors import ConfigError
from posevit.models.bundle_config import DataConfig
from posevit.models.preprocess import EvalPreprocess
from posevit.models.transforms import eval_transform

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
CONFIGS = {
    "demo 96 px": DataConfig(
        input_size=[3, 96, 96], interpolation="bicubic", mean=[0.5] * 3, std=[0.5] * 3, crop_pct=1.0, crop_mode="center"
    ),
    "ViT-B/16": DataConfig(
        input_size=[3, 224, 224], interpolation="bicubic", crop_pct=0.9, crop_mode="center", **IMAGENET
    ),
    "squash, bilinear": DataConfig(
        input_size=[3, 224, 224], interpolation="bilinear", crop_pct=0.875, crop_mode="squash", **IMAGENET
    ),
    "squash, wider than tall": DataConfig(
        input_size=[3, 160, 224], interpolation="bicubic", crop_pct=1.0, crop_mode="squash", **IMAGENET
    ),
}
SIZES = [(640, 480), (333, 500), (96, 96), (50, 70), (224, 224), (1, 300), (249, 248), (4000, 30)]


@pytest.mark.parametrize("name", CONFIGS)
def test_the_numpy_transform_equals_timms_on_odd_sizes_and_modes(name):
    config = CONFIGS[name]
    ours, timms = EvalPreprocess(config), eval_transform(config)
    rng = np.random.default_rng(0)
    for width, height in SIZES:
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        for variant in (image, image.convert("L"), image.convert("RGBA"), image.convert("P")):
            expected = timms(variant.convert("RGB")).numpy()
            pixels = ours(variant)
            assert pixels.dtype == np.float32 and pixels.shape == expected.shape == (3, *config["input_size"][1:])
            assert np.array_equal(pixels, expected), (name, variant.mode, width, height)


def test_a_crop_mode_it_cannot_do_names_itself_and_the_way_out():
    config = dict(CONFIGS["ViT-B/16"], crop_mode="border")
    with pytest.raises(ConfigError, match="crop_mode 'border'.*backend torch"):
        EvalPreprocess(DataConfig(**config))  # type: ignore[typeddict-item]
