"""Image bytes and small datasets built with the real `datasets` features, for tests."""

from __future__ import annotations

import io
import struct
import zlib

import datasets
import numpy as np
from PIL import Image

from posevit.core.labels import ACTION_CLASSES


def png_bytes(
    colour: tuple[int, int, int] = (120, 40, 200), size: tuple[int, int] = (24, 16), mode: str = "RGB"
) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else None).save(buffer, format="PNG")
    return buffer.getvalue()


def action_dataset(labels: list[int], seed: int = 0) -> datasets.Dataset:
    """A dataset with the hub's features: `image` (Image) and `labels` (ClassLabel, 15 names)."""
    rng = np.random.default_rng(seed)
    images = [{"bytes": png_bytes(tuple(int(c) for c in rng.integers(0, 256, 3))), "path": None} for _ in labels]
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.ClassLabel(names=list(ACTION_CLASSES))})
    return datasets.Dataset.from_dict({"image": images, "labels": labels}, features=features)


def balanced_labels(per_class: int) -> list[int]:
    return [label for _ in range(per_class) for label in range(len(ACTION_CLASSES))]


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return buffer.getvalue()


def png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's header)."""
    data = bytearray(encode(Image.new("L", (1, 1)), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
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
