"""Decode any image once, upright and RGB, so every later stage can trust its input.

Photos arrive in every PIL mode (L, LA, P, RGBA, CMYK, I;16, ...), with EXIF rotation,
as animations, or broken. `normalise_image` turns each into RGB pixels the right way
up, or raises ImageError saying why, so the caller can drop and report it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from posevit.core.errors import ImageError, ImageTooLarge, NotAnImage

# An image that needs no change keeps its original bytes (no re-encoding loss or bloat).
_KEEP_AS_IS_FORMATS = {"JPEG", "PNG", "WEBP", "BMP"}
_EXIF_ORIENTATION = 0x0112
_HIGH_BIT_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
# `Image.info` key: the encoded image's (width, height), upright, when it was decoded at reduced scale.
_SOURCE_SIZE = "posevit_source_size"


@dataclass(frozen=True)
class NormalisedImage:
    data: bytes  # encoded RGB image (original bytes when already upright RGB, else PNG)
    width: int
    height: int
    original_mode: str


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite transparent pixels onto white, as a viewer would show them."""
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16/32-bit and float grey levels into 8 bits instead of letting PIL clip them."""
    pixels = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        pixels = pixels / 257.0
    else:
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0.0 or high > 255.0:
            pixels = (pixels - low) * (255.0 / max(high - low, 1e-12))
    grey = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="L")
    return grey.convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert an image of any PIL mode to RGB."""
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        return _high_bit_depth_to_rgb(image)
    has_alpha = image.mode in {"RGBA", "LA", "PA", "La", "RGBa"} or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        return _flatten_alpha(image)
    return image.convert("RGB")


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # a corrupt EXIF block must not cost the image
        return 1


def open_image(
    data: bytes, max_pixels: int, limit_name: str = "data.max_image_pixels", draft_side: int | None = None
) -> Image.Image:
    """Open, size-check and fully decode encoded image bytes (first frame of animations).

    With `draft_side`, a JPEG decodes at the smallest of 1/2, 1/4 or 1/8 scale that keeps both sides at least
    `draft_side` (libjpeg scales in the inverse DCT, much cheaper than decoding in full and resizing)."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise NotAnImage("not an image PIL can read") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"too large: {exc}") from None
    except Exception as exc:
        raise ImageError(f"cannot open: {exc}") from None
    width, height = image.size
    image.info[_SOURCE_SIZE] = (width, height)
    # Checked on the header, before decoding, so a decompression bomb never allocates.
    if width * height > max_pixels:
        raise ImageTooLarge(f"too large: {width}x{height} = {width * height:,} pixels > {limit_name}={max_pixels:,}")
    if width < 1 or height < 1:
        raise ImageError(f"empty image ({width}x{height})")
    try:
        image.seek(0)
        if draft_side is not None and image.format == "JPEG":
            image.draft("RGB", (draft_side, draft_side))  # a no-op when that would go below draft_side
        image.load()
    except Exception as exc:  # truncated or corrupt pixel data
        raise ImageError(f"cannot decode: {exc}") from None
    return image


def decode_rgb(
    data: bytes, max_pixels: int, limit_name: str = "data.max_image_pixels", draft_side: int | None = None
) -> Image.Image:
    """Decode `data` to an upright RGB image (first frame), or raise ImageError saying why; with `draft_side`,
    a JPEG at a reduced scale whose sides stay at least `draft_side` (`open_image`)."""
    image = open_image(data, max_pixels, limit_name, draft_side)
    width, height = image.info[_SOURCE_SIZE]
    try:
        upright = ImageOps.exif_transpose(image)
        rgb = to_rgb(upright)
    except Exception as exc:
        raise ImageError(f"cannot convert mode {image.mode} to RGB: {exc}") from None
    rgb.info[_SOURCE_SIZE] = (height, width) if upright.size != image.size else (width, height)
    return rgb


def source_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the photo as sent, upright: `image.size`, unless `decode_rgb` decoded it at reduced
    scale (then what the client sent, not the smaller image the transform read)."""
    size = image.info.get(_SOURCE_SIZE)
    return (int(size[0]), int(size[1])) if size else image.size


def normalise_image(data: bytes, max_pixels: int) -> NormalisedImage:
    """Decode `data` and return it upright and RGB, or raise ImageError."""
    image = open_image(data, max_pixels)
    original_mode = image.mode
    unchanged = (
        image.mode == "RGB"
        and image.format in _KEEP_AS_IS_FORMATS
        and _orientation(image) == 1
        and getattr(image, "n_frames", 1) == 1
    )
    if unchanged:
        return NormalisedImage(data, image.width, image.height, original_mode)
    try:
        upright = ImageOps.exif_transpose(image)
        rgb = to_rgb(upright)
    except Exception as exc:
        raise ImageError(f"cannot convert mode {original_mode} to RGB: {exc}") from None
    buffer = io.BytesIO()
    rgb.save(buffer, format="PNG")
    return NormalisedImage(buffer.getvalue(), rgb.width, rgb.height, original_mode)
