"""Whatever a person uploads, the app's decoder returns an upright RGB image or a clear message."""

from __future__ import annotations

import io
import struct
import zlib

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from posevit.app_ui import Limits, read_upload


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's header)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


def exif_rotated_jpeg() -> bytes:
    """A 40x20 JPEG, left half red, whose EXIF says 'rotate 90° clockwise to view' (orientation 6)."""
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif, quality=95)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


ODD_BUT_FINE = {
    "RGBA": lambda: encode(Image.new("RGBA", (8, 6), (255, 0, 0, 0)), "PNG"),
    "LA": lambda: encode(Image.new("LA", (8, 6), (90, 255)), "PNG"),
    "P with transparency": lambda: encode(Image.new("P", (8, 6), 3), "PNG", transparency=3),
    "CMYK JPEG": lambda: encode(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "JPEG"),
    "16-bit grey": lambda: encode(Image.fromarray(np.full((6, 8), 65535, dtype=np.uint16)), "PNG"),
    "1-bit": lambda: encode(Image.new("1", (8, 6), 1), "PNG"),
    "1x1": lambda: encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"),
    "WebP": lambda: encode(Image.new("RGB", (8, 6), (10, 200, 30)), "WEBP"),
    "TIFF float": lambda: encode(Image.fromarray(np.linspace(-1, 1, 48, dtype=np.float32).reshape(6, 8)), "TIFF"),
}


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


@pytest.mark.parametrize("data, message", [
    (png_with_declared_size(8000, 8000), "64,000,000 pixels > the app's pixel limit=40,000,000"),
    (png_with_declared_size(60000, 60000), "too large"),  # past PIL's own bomb guard too
    (b"%PDF-1.4 not an image", "not an image PIL can read"),
    (b"", "not an image PIL can read"),
    (encode(Image.new("RGB", (64, 64), (9, 9, 9)), "PNG")[:80], "cannot decode"),
    (encode(Image.new("RGB", (64, 64)), "JPEG")[:200], "Truncated File Read"),  # cut inside the header
    (encode(Image.effect_noise((64, 64), 80).convert("RGB"), "JPEG")[:1500], "cannot decode"),  # inside the pixels
])
def test_bad_uploads_get_a_clear_message(data, message):
    with pytest.raises(gr.Error) as error:
        read_upload(data, Limits())
    assert error.value.message.startswith("Cannot use this file") and message in error.value.message


def test_nothing_uploaded_says_so():
    with pytest.raises(gr.Error, match="Upload an image first"):
        read_upload(None, Limits())
