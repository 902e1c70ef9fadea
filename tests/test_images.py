"""Every PIL mode, EXIF rotation, animations and broken files are normalised or rejected clearly."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from posevit.core.errors import ImageError
from posevit.data.images import normalise_image

MAX_PIXELS = 10_000_000


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", (20, 10), 0)
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.paste(1, (10, 0, 20, 10))
    image.info["transparency"] = 0
    return image


ODD_IMAGES = {
    "1": (lambda: Image.new("1", (20, 10), 1), "PNG"),
    "L": (lambda: Image.new("L", (20, 10), 77), "PNG"),
    "LA": (lambda: Image.new("LA", (20, 10), (77, 0)), "PNG"),
    "P": (lambda: Image.new("RGB", (20, 10), (10, 200, 30)).convert("P"), "GIF"),
    "P+transparency": (palette_with_transparency, "PNG"),
    "RGBA": (lambda: Image.new("RGBA", (20, 10), (255, 0, 0, 0)), "PNG"),
    "CMYK": (lambda: Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG"),
    "I;16": (lambda: Image.fromarray(np.full((10, 20), 65535, dtype=np.uint16)), "PNG"),
    "I": (lambda: Image.fromarray(np.full((10, 20), 4095, dtype=np.int32)), "TIFF"),
    "F": (lambda: Image.fromarray(np.linspace(0, 1, 200, dtype=np.float32).reshape(10, 20)), "TIFF"),
}


@pytest.mark.parametrize("name", ODD_IMAGES)
def test_any_mode_becomes_rgb_of_the_same_size(name):
    make, fmt = ODD_IMAGES[name]
    result = normalise_image(encode(make(), fmt), MAX_PIXELS)
    image = decode(result.data)
    assert image.mode == "RGB"
    assert image.size == (20, 10) == (result.width, result.height)


def test_transparent_pixels_become_white_and_16_bit_white_stays_white():
    rgba = decode(normalise_image(encode(Image.new("RGBA", (4, 4), (255, 0, 0, 0)), "PNG"), MAX_PIXELS).data)
    assert rgba.getpixel((0, 0)) == (255, 255, 255)
    sixteen = decode(normalise_image(encode(ODD_IMAGES["I;16"][0](), "PNG"), MAX_PIXELS).data)
    assert sixteen.getpixel((0, 0)) == (255, 255, 255)  # PIL's own convert would clip, not scale
    cmyk = decode(normalise_image(encode(ODD_IMAGES["CMYK"][0](), "JPEG"), MAX_PIXELS).data)
    red, green, blue = cmyk.getpixel((5, 5))
    assert red > 200 and green < 60 and blue < 60


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    result = normalise_image(encode(image, "JPEG", exif=exif, quality=95), MAX_PIXELS)
    upright = decode(result.data)
    assert (result.width, result.height) == (20, 40)
    top_red, _, _ = upright.getpixel((10, 5))
    assert top_red > 200  # the left half is now on top


def test_upright_rgb_keeps_its_original_bytes():
    data = encode(Image.new("RGB", (16, 16), (1, 2, 3)), "JPEG")
    assert normalise_image(data, MAX_PIXELS).data == data


def test_animation_keeps_the_first_frame():
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    first = decode(normalise_image(data, MAX_PIXELS).data)
    assert first.getpixel((4, 4))[0] > 200


def test_one_pixel_image_is_fine():
    assert decode(normalise_image(encode(Image.new("L", (1, 1), 9), "PNG"), MAX_PIXELS).data).size == (1, 1)


NOISE = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
FULL_JPEG = encode(Image.fromarray(NOISE), "JPEG")
TRUNCATED_JPEG = FULL_JPEG[: len(FULL_JPEG) // 2]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (TRUNCATED_JPEG, "cannot decode"),
        (TRUNCATED_JPEG[:150], "cannot open"),
        (b"this is not an image", "not an image"),
        (b"", "not an image"),
    ],
)
def test_broken_files_raise_a_clear_error(data, reason):
    with pytest.raises(ImageError, match=reason):
        normalise_image(data, MAX_PIXELS)


def test_oversized_image_is_refused_from_its_header():
    data = encode(Image.new("L", (200, 100)), "PNG")
    with pytest.raises(ImageError, match=r"too large: 200x100 = 20,000 pixels > data.max_image_pixels=5,000"):
        normalise_image(data, max_pixels=5_000)
