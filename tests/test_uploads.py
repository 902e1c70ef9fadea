"""Whatever a person uploads, the app's decoder returns an upright RGB image or a clear message."""

from __future__ import annotations

import gradio as gr
import pytest
from PIL import Image

from posevit.serve.page import Limits, read_upload
from tests.helpers.images import ODD_BUT_FINE, animated_gif, encode, exif_rotated_jpeg, png_with_declared_size


@pytest.mark.parametrize("kind", sorted(ODD_BUT_FINE))
def test_every_pil_mode_becomes_rgb(kind):
    image = read_upload(ODD_BUT_FINE[kind](), Limits())
    assert image.mode == "RGB" and image.size[0] >= 1


def test_transparent_pixels_become_white_and_sixteen_bit_keeps_its_brightness():
    assert read_upload(ODD_BUT_FINE["RGBA"](), Limits()).getpixel((0, 0)) == (255, 255, 255)
    assert read_upload(ODD_BUT_FINE["16-bit grey"](), Limits()).getpixel((0, 0)) == (255, 255, 255)


def test_exif_rotation_is_applied():
    image = read_upload(exif_rotated_jpeg(), Limits())
    assert image.size == (20, 40)
    top = image.getpixel((10, 5))
    assert top[0] > 200 and top[2] < 60  # the red half is now on top


def test_animated_images_give_their_first_frame():
    assert read_upload(animated_gif(), Limits()).getpixel((8, 8)) == (255, 0, 0)


def test_uploads_from_a_file_path_are_read_and_size_capped(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(Image.new("RGB", (300, 300)), "PNG"))
    assert read_upload(str(path), Limits()).size == (300, 300)
    with pytest.raises(gr.Error, match="limit is 0 MB"):
        read_upload(str(path), Limits(max_file_bytes=100))


@pytest.mark.parametrize(
    "data, message",
    [
        (png_with_declared_size(8000, 8000), "64,000,000 pixels > the app's pixel limit=40,000,000"),
        (png_with_declared_size(60000, 60000), "too large"),  # past PIL's own bomb guard too
        (b"%PDF-1.4 not an image", "not an image PIL can read"),
        (b"", "not an image PIL can read"),
        (encode(Image.new("RGB", (64, 64), (9, 9, 9)), "PNG")[:80], "cannot decode"),
        (encode(Image.new("RGB", (64, 64)), "JPEG")[:200], "Truncated File Read"),  # cut inside the header
        (encode(Image.effect_noise((64, 64), 80).convert("RGB"), "JPEG")[:1500], "cannot decode"),  # inside the pixels
    ],
)
def test_bad_uploads_get_a_clear_message(data, message):
    with pytest.raises(gr.Error) as error:
        read_upload(data, Limits())
    assert error.value.message.startswith("Cannot use this file") and message in error.value.message


def test_nothing_uploaded_says_so():
    with pytest.raises(gr.Error, match="Upload an image first"):
        read_upload(None, Limits())
