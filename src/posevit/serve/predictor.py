"""Single-image inference on a bundle: the evaluation transform, bf16 where it is fast, and a heat map.

The app's predict path is `Predictor.predict`; `benchmarks/app_latency.py` times exactly it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from posevit.core.precision import autocast, inference_precision
from posevit.models.bundle import Bundle
from posevit.models.transforms import DataConfig

DISPLAY_SIZE = 288


@dataclass(frozen=True)
class Prediction:
    probabilities: dict[str, float]  # every label, in the bundle's order
    seconds: float

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)[:k]


class Predictor:
    """Holds one bundle in eval mode and classifies PIL images one at a time."""

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu") -> None:
        self.bundle = bundle
        self.device = torch.device(device)
        self.model = bundle.model.to(self.device).eval()
        self.transform = bundle.eval_transform()
        self.labels = bundle.labels
        self.precision = inference_precision(self.device)  # what `predict` runs in, for the page to show

    def pixels(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image.convert("RGB")).unsqueeze(0).to(self.device)

    @torch.inference_mode()
    def predict(self, image: Image.Image) -> Prediction:
        start = time.perf_counter()
        with autocast(self.device):
            logits = self.model(self.pixels(image))
        probabilities = torch.softmax(logits.float(), dim=-1)[0].tolist()
        return Prediction(dict(zip(self.labels, probabilities, strict=True)), time.perf_counter() - start)

    def heat_map(self, image: Image.Image, label: str | None = None) -> np.ndarray:
        """Where the model looked: |d logit / d pixel| (SmoothGrad-free saliency), blurred, in [0, 1].

        Returned at the size of the model's input crop; `overlay` maps it back onto the photo.
        """
        pixels = self.pixels(image).requires_grad_(True)
        with torch.enable_grad(), autocast(self.device):
            logits = self.model(pixels).float()
            index = self.labels.index(label) if label else int(logits.argmax())
            logits[0, index].backward()
        assert pixels.grad is not None  # backward() above filled it
        saliency = pixels.grad.abs().amax(dim=1, keepdim=True)  # (1, 1, H, W)
        kernel = max(3, (saliency.shape[-1] // 16) | 1)  # smooth pixel noise into regions
        smoothed = F.avg_pool2d(saliency, kernel, stride=1, padding=kernel // 2)[0, 0].numpy()
        low, high = np.percentile(smoothed, [50, 99.5])
        return np.clip((smoothed - low) / max(high - low, 1e-12), 0.0, 1.0)

    def overlay(self, image: Image.Image, heat: np.ndarray, alpha: float = 0.5) -> Image.Image:
        """The heat map in colour over the same centre crop the model saw."""
        from matplotlib import colormaps

        size = heat.shape[::-1]
        crop = _center_crop_like(image.convert("RGB"), self.bundle.data_config, size)
        colour = (colormaps["inferno"](heat)[..., :3] * 255).astype(np.uint8)
        blended = Image.blend(crop, Image.fromarray(colour), alpha)
        scale = max(1, DISPLAY_SIZE // max(size))  # small inputs (the demo's 96 px) are shown larger
        return blended.resize((size[0] * scale, size[1] * scale), Image.Resampling.BICUBIC) if scale > 1 else blended


def _center_crop_like(image: Image.Image, data_config: DataConfig, size: tuple[int, int]) -> Image.Image:
    """The region of `image` the evaluation transform keeps (resize shorter side, centre crop), at `size`."""
    crop_pct = float(data_config["crop_pct"])
    width, height = image.size
    side = min(width, height) * crop_pct
    left, top = (width - side) / 2, (height - side) / 2
    return image.resize(size, Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
