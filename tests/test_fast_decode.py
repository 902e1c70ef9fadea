"""`fast_decode`: JPEGs decoded at reduced scale (never below the model's resize) and the fast NumPy transform, close
to the exact one; a model it cannot do says so; the server and `posevit predict` take the setting. What it saves
and how often its answers agree with the exact transform's is `benchmarks/fast_decode.py`'s to measure."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from posevit.core.config import PredictConfig, ServeConfig
from posevit.core.errors import ConfigError, ImageTooLarge
from posevit.data.images import decode_rgb, source_size
from posevit.infer.decode_pool import reader_for
from posevit.infer.folders import classify_files
from posevit.infer.inputs import Input
from posevit.models.bundle_config import DataConfig
from posevit.models.preprocess import FAST_REDUCING_GAP, EvalPreprocess
from tests.helpers.api import api_client, tiny_model
from tests.helpers.images import encode, exif_rotated_jpeg

pytestmark = pytest.mark.timeout(120)

DEMO = DataConfig(
    input_size=[3, 96, 96], interpolation="bicubic", mean=[0.5] * 3, std=[0.5] * 3, crop_pct=1.0, crop_mode="center"
)
VIT_B16 = DataConfig(
    input_size=[3, 224, 224],
    interpolation="bicubic",
    mean=[0.485, 0.456, 0.406],
    std=[0.229, 0.224, 0.225],
    crop_pct=0.9,
    crop_mode="center",
)


def photo(width: int = 640, height: int = 480, seed: int = 0, fmt: str = "JPEG") -> bytes:
    """Smooth colour fields, as photos are (noise would make any resize look far off)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    return encode(
        small.resize((width, height), Image.Resampling.BICUBIC), fmt, **({"quality": 90} if fmt == "JPEG" else {})
    )


def test_a_jpeg_decodes_at_the_smallest_scale_that_keeps_the_side_asked_for():
    data = photo(640, 480)
    assert decode_rgb(data, 10**7).size == (640, 480)
    assert decode_rgb(data, 10**7, draft_side=96).size == (160, 120)  # 1/4: 1/8 would be 60 px high
    assert decode_rgb(data, 10**7, draft_side=120).size == (160, 120)
    assert decode_rgb(data, 10**7, draft_side=248).size == (640, 480)  # ViT-B's 248: half of 480 is too small
    assert decode_rgb(photo(640, 480, fmt="PNG"), 10**7, draft_side=96).size == (640, 480)  # only JPEGs scale


def test_the_pixel_limit_is_the_full_size_even_when_decoded_smaller():
    with pytest.raises(ImageTooLarge, match="640x480 = 307,200 pixels > serve.max_pixels=300,000"):
        decode_rgb(photo(640, 480), 300_000, limit_name="serve.max_pixels", draft_side=96)


def test_a_rotated_jpeg_decoded_small_is_still_upright():
    image = decode_rgb(exif_rotated_jpeg(), 10**7, draft_side=8)  # 40x20, rotated to 20x40; 1/2 keeps 10 >= 8
    assert image.size == (10, 20)
    assert source_size(image) == (20, 40)  # what was sent, upright: what the API and the prediction log report
    assert source_size(decode_rgb(exif_rotated_jpeg(), 10**7)) == (20, 40)
    red, blue = np.asarray(image)[2, 5], np.asarray(image)[-3, 5]  # the left half (red) is on top once upright
    assert red[0] > 200 > red[2] and blue[2] > 200 > blue[0]


@pytest.mark.parametrize("config", [DEMO, VIT_B16], ids=["demo 96 px", "ViT-B/16"])
def test_the_fast_transform_is_the_exact_one_but_for_resizing_the_crop_alone_in_two_steps(config):
    exact, fast = EvalPreprocess(config), EvalPreprocess(config, fast=True)
    resize_side, level = max(exact.scale), 1 / 255 / min(config["std"])  # one 8-bit level, normalised
    for width, height in [(640, 480), (333, 500), (96, 96), (1280, 960), (97, 500)]:
        image = Image.open(io.BytesIO(photo(width, height, seed=width)))
        expected, pixels = exact(image), fast(image)
        assert pixels.dtype == np.float32 and pixels.shape == expected.shape and pixels.flags.c_contiguous
        difference = np.abs(pixels - expected)
        new_width, new_height = exact.resized_size(width, height)
        if new_width >= width and new_height >= height:  # nothing to shrink: the same resize and crop
            assert np.array_equal(pixels, expected), (width, height)
        elif min(width, height) < 2 * FAST_REDUCING_GAP * resize_side:  # the same filter over the crop's box
            assert float(difference.max()) <= level * 1.001 and float((difference > 0).mean()) < 0.005, (width, height)
        else:  # a box reduce first: a few levels at most on a photo
            assert 0 < float(difference.mean()) < 0.01 and float(difference.max()) < 0.1, (width, height)


def test_a_jpeg_is_drafted_down_to_twice_the_models_resize_never_below():
    assert EvalPreprocess(DEMO).draft_side == 192 and EvalPreprocess(VIT_B16).draft_side == 496
    demo = reader_for(lambda image: np.zeros(1), DEMO, fast_decode=True)
    image, pixels = demo.read(photo(640, 480), 10**7, "serve.max_pixels")
    assert image.size == (320, 240) and pixels.shape == (3, 96, 96)  # 1/4 would be 120 px high: under 192
    vit = reader_for(lambda image: np.zeros(1), VIT_B16, fast_decode=True)
    assert vit.read(photo(640, 480), 10**7, "serve.max_pixels")[0].size == (640, 480)  # no room for a draft
    image, pixels = vit.read(photo(2000, 1500), 10**7, "serve.max_pixels")
    assert image.size == (1000, 750) and pixels.shape == (3, 224, 224)


def test_the_exact_reader_is_the_predictors_own_transform():
    own = lambda image: np.ones(3)  # noqa: E731
    reader = reader_for(own, VIT_B16, fast_decode=False)
    assert reader.preprocess is own and reader.draft_side is None


def test_a_model_the_numpy_transform_cannot_do_names_fast_decode_and_the_way_out():
    border = DataConfig(**{**VIT_B16, "crop_mode": "border"})  # type: ignore[typeddict-item]
    with pytest.raises(ConfigError, match=r"fast_decode needs the NumPy eval transform.*leave fast_decode off"):
        reader_for(lambda image: np.zeros(1), border, fast_decode=True)


def test_both_commands_have_the_setting_off_by_default():
    assert ServeConfig().fast_decode is False and PredictConfig().fast_decode is False
    assert ServeConfig(fast_decode=True).fast_decode


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("fast-decode"))


def test_the_server_decodes_fast_when_asked_and_says_so(model):
    with api_client(model, fast_decode=True, batch_limit=1) as (client, service):
        assert service.model.reader.draft_side == 192
        assert client.get("/v1/model").json()["decode"] == {"fast": True, "draft_side": 192}
        response = client.post("/v1/predict", files={"file": ("photo.jpg", photo(640, 480))})
        assert response.status_code == 200, response.text
        assert response.json()["image"] == {"width": 640, "height": 480}  # as sent, not the 320x240 it decoded
    with api_client(model, batch_limit=1) as (client, service):
        assert client.get("/v1/model").json()["decode"] == {"fast": False, "draft_side": None}


def test_predict_decodes_fast_when_asked(model, tmp_path):
    predictor, _ = model
    paths = []
    for seed in range(6):
        path = tmp_path / f"{seed}.jpg"
        path.write_bytes(photo(640, 480, seed=seed))
        paths.append(Input(str(path)))
    exact = [row for rows in classify_files(paths, predictor, 4, 15, workers=2) for row in rows]
    fast = [row for rows in classify_files(paths, predictor, 4, 15, workers=2, fast_decode=True) for row in rows]
    assert [row.error for row in fast] == [None] * 6
    for exact_row, fast_row in zip(exact, fast, strict=True):
        exact_p = dict(exact_row.top)
        assert max(abs(p - exact_p[label]) for label, p in fast_row.top) < 0.05  # close, not equal
