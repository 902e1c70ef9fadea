"""Inference on a bundle: the evaluation transform, batched forward passes (bf16 where fast), a heat map.

The server batches through `Predictor.forward`; `predict` is one image alone (the replaced app's path,
which `benchmarks/app_latency.py` times).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from posevit.core.errors import ConfigError
from posevit.core.precision import autocast, inference_precision
from posevit.models.bundle import Bundle
from posevit.models.onnx_runtime import OnnxModel
from posevit.models.transforms import DataConfig

DISPLAY_SIZE = 288
Backend = Literal["torch", "onnx", "onnx-int8"]
ONNX_FILES = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}  # as the export stage names them


@dataclass(frozen=True)
class Prediction:
    probabilities: dict[str, float]  # every label, in the bundle's order
    seconds: float

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)[:k]


class Predictor:
    """Holds one bundle in eval mode on one device; turns images into pixels and pixels into probabilities."""

    def __init__(
        self,
        bundle: Bundle,
        device: str | torch.device = "cpu",
        backend: Backend = "torch",
        exports_dir: Path | None = None,
    ) -> None:
        self.bundle = bundle
        self.device = torch.device(device)
        self.model = bundle.model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.transform = bundle.eval_transform()
        self.labels = bundle.labels
        self.model_name = bundle.config.model_name
        self.backend = backend
        self.onnx: OnnxModel | None = None
        if backend == "torch":
            self.precision: str = inference_precision(self.device)  # what `forward` runs in, for the page and API
        else:
            if exports_dir is None:
                raise ConfigError(
                    f"backend {backend} needs the model's ONNX export ({ONNX_FILES[backend]} in an exports/ folder "
                    "beside models/), and this model came without one: run `dvc repro export` (a registry version "
                    "has them when its push published them), or use backend torch"
                )
            self.onnx = OnnxModel(exports_dir / ONNX_FILES[backend], str(self.device))
            self.precision = "int8 (ONNX Runtime)" if backend == "onnx-int8" else "fp32 (ONNX Runtime)"

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        _, height, width = self.bundle.data_config["input_size"]
        return height, width

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """The eval transform: (C, H, W) float pixels on the CPU (cheap, so it runs in request threads)."""
        return self.transform(image.convert("RGB"))

    def pixels(self, image: Image.Image) -> torch.Tensor:
        return self.preprocess(image).unsqueeze(0).to(self.device)

    @torch.inference_mode()
    def forward(self, pixels: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) pixels -> (N, classes) calibrated probabilities, one forward pass on the configured backend."""
        if self.onnx is not None:
            logits = torch.from_numpy(self.onnx.logits(pixels.numpy()))
        else:
            batch = pixels.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            with autocast(self.device):
                logits = self.model(batch).float().cpu()
        return torch.softmax(logits / self.bundle.temperature, dim=-1).numpy()  # calibrated on the validation split

    def predict(self, image: Image.Image) -> Prediction:
        """One image alone, timed."""
        start = time.perf_counter()
        probabilities = self.forward(self.pixels(image))[0].tolist()
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
