"""The eval transform in PIL and NumPy alone, for the ONNX backends (the serving image has no torch).

It does what timm's eval transform (`models.transforms.eval_transform`, torchvision underneath)
does with the bundle's data config, step for step: resize (the shorter side, or both sides for
`squash`) to input / crop_pct with PIL, centre-crop with torchvision's rounding, scale to [0, 1],
normalise, channels first. tests/test_preprocess.py holds it equal to timm's on odd sizes. Scaling and
normalising look each 8-bit level up in a table of the very float32 values that arithmetic gives (3x faster
than computing them per pixel, and bit for bit the same).

`fast=True` (`serve.fast_decode`, `posevit predict --fast-decode`) trades exactness for time in the resize: it
shrinks only the part the crop keeps, in two steps (PIL's `reducing_gap`: an integer box reduce, then the
model's filter over the last `FAST_REDUCING_GAP` times). A JPEG is decoded in draft mode
(`data.images.decode_rgb(draft_side=...)`) down to `draft_side`, by the same rule: the model's filter always
does the last 2x of the downscale (decoding right down to the resize side, the inverse DCT's cruder scaling
moved 1.6% of the demo's answers; this, 0.6%).
`benchmarks/fast_decode.py` measures it against the exact transform: time, top-1 agreement and accuracy.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from posevit.core.errors import ConfigError
from posevit.models.bundle_config import DataConfig

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
CROP_MODES = ("center", "squash")
FAST_REDUCING_GAP = 2.0  # cheap reductions (draft, box) stop where 2x the model's resize side remains


class EvalPreprocess:
    """PIL image -> (3, H, W) float32 pixels, as the model saw them in evaluation."""

    def __init__(self, data_config: DataConfig, fast: bool = False) -> None:
        self.fast = fast
        _, self.height, self.width = data_config["input_size"]
        crop_pct = data_config["crop_pct"] or 0.875  # timm's default
        if data_config["crop_mode"] not in CROP_MODES or data_config["interpolation"] not in RESAMPLING:
            raise ConfigError(
                f"the ONNX backends resize with crop_mode {'/'.join(CROP_MODES)} and PIL's filters; this model's "
                f"data config has crop_mode {data_config['crop_mode']!r}, interpolation "
                f"{data_config['interpolation']!r}: serve it with backend torch"
            )
        self.squash = data_config["crop_mode"] == "squash"
        self.scale = (math.floor(self.height / crop_pct), math.floor(self.width / crop_pct))
        if not self.squash and self.scale[0] != self.scale[1]:  # timm keeps the ratio there: not done here
            raise ConfigError("crop_mode center with a non-square input: serve this model with backend torch")
        self.resample = RESAMPLING[data_config["interpolation"]]
        self.mean = np.asarray(data_config["mean"], dtype=np.float32)
        self.std = np.asarray(data_config["std"], dtype=np.float32)
        levels = np.arange(256, dtype=np.float32) / np.float32(255)
        self.normalised = (levels[None, :] - self.mean[:, None]) / self.std[:, None]  # (channel, 8-bit level)

    @property
    def draft_side(self) -> int:
        """The side a JPEG may be decoded down to (draft mode): the model's resize side, `FAST_REDUCING_GAP` times."""
        return math.ceil(max(self.scale) * FAST_REDUCING_GAP)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the resize: torchvision's `Resize` arithmetic."""
        if self.squash:
            return self.scale[1], self.scale[0]
        short, long = sorted((width, height))
        new_long = int(self.scale[0] * long / short)
        return (self.scale[0], new_long) if width <= height else (new_long, self.scale[0])

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = image if image.mode == "RGB" else image.convert("RGB")
        levels = np.asarray(self._resized_crop(image)).transpose(2, 0, 1)  # channels first, still 1 byte a value
        pixels = np.empty(levels.shape, np.float32)
        for channel, table in enumerate(self.normalised):
            np.take(table, levels[channel], out=pixels[channel])  # = (level / 255 - mean) / std, exactly
        return pixels

    def _resized_crop(self, image: Image.Image) -> Image.Image:
        """Resize, then centre-crop. The fast transform shrinks only the box the crop keeps (PIL's filter reads past
        the box into the image, at the same scale and phase): 40% less work for ViT-B/16 at 640x480. Not the exact
        transform's way: PIL takes the box in float32, which moves one 8-bit level in about 1 of 2,000 values."""
        width, height = image.size
        new_width, new_height = self.resized_size(width, height)
        if (new_width, new_height) == (width, height):
            return self._center_crop(image)
        shrinks = new_width <= width and new_height <= height  # (upscaled, the float32 box moves up to 2 levels)
        if not (self.fast and shrinks) or new_width < self.width or new_height < self.height:  # (or the crop pads)
            gap = FAST_REDUCING_GAP if self.fast else None
            return self._center_crop(image.resize((new_width, new_height), self.resample, reducing_gap=gap))
        left, top = self._crop_origin(new_width, new_height)
        x_scale, y_scale = width / new_width, height / new_height
        box = (left * x_scale, top * y_scale, (left + self.width) * x_scale, (top + self.height) * y_scale)
        return image.resize((self.width, self.height), self.resample, box=box, reducing_gap=FAST_REDUCING_GAP)

    def _crop_origin(self, width: int, height: int) -> tuple[int, int]:
        """(left, top) of the centre crop of a `width` x `height` image: torchvision's rounding."""
        return int(round((width - self.width) / 2.0)), int(round((height - self.height) / 2.0))

    def _center_crop(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width < self.width or height < self.height:  # torchvision pads with black, then crops
            padded = Image.new("RGB", (max(width, self.width), max(height, self.height)))
            padded.paste(image, ((padded.width - width) // 2, (padded.height - height) // 2))
            image, (width, height) = padded, padded.size
        left, top = self._crop_origin(width, height)
        return image.crop((left, top, left + self.width, top + self.height))
