"""The torch backend: the bundle's weights in PyTorch (bf16 autocast where fast), and gradient heat maps."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from posevit.core.config import Precision
from posevit.core.precision import autocast, inference_precision
from posevit.infer.predictor import Predictor
from posevit.models.bundle import Bundle


class TorchPredictor(Predictor):
    backend = "torch"
    explains = True

    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu", precision: Precision = "auto") -> None:
        self.torch_device = torch.device(device)
        super().__init__(bundle.config, str(self.torch_device))
        self.model = bundle.model.to(self.torch_device).eval().to(memory_format=torch.channels_last)
        self.transform = bundle.eval_transform()  # timm's, exactly what evaluation used
        self.computes_in = inference_precision(self.torch_device, precision)
        self.precision = self.computes_in

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.transform(image.convert("RGB")).numpy()

    @torch.inference_mode()
    def forward(self, pixels: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(pixels).to(self.torch_device, non_blocking=True)
        with autocast(self.torch_device, self.computes_in):
            logits = self.model(batch.contiguous(memory_format=torch.channels_last)).float().cpu()
        return torch.softmax(logits / self.temperature, dim=-1).numpy()

    def heat_map(self, image: Image.Image, label: str | None = None) -> np.ndarray:
        """Where the model looked: |d logit / d pixel| (SmoothGrad-free saliency), blurred, in [0, 1].

        Returned at the size of the model's input crop; `overlay` maps it back onto the photo.
        """
        pixels = torch.from_numpy(self.preprocess(image)[None]).to(self.torch_device).requires_grad_(True)
        with torch.enable_grad(), autocast(self.torch_device, self.computes_in):
            logits = self.model(pixels).float()
            index = self.labels.index(label) if label else int(logits.argmax())
            logits[0, index].backward()
        assert pixels.grad is not None  # backward() above filled it
        saliency = pixels.grad.abs().amax(dim=1, keepdim=True).cpu()  # (1, 1, H, W)
        kernel = max(3, (saliency.shape[-1] // 16) | 1)  # smooth pixel noise into regions
        smoothed = F.avg_pool2d(saliency, kernel, stride=1, padding=kernel // 2)[0, 0].numpy()
        low, high = np.percentile(smoothed, [50, 99.5])
        return np.clip((smoothed - low) / max(high - low, 1e-12), 0.0, 1.0)
