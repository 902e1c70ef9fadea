"""Shared measuring tools for the benchmarks: the machine's bf16 matmul peak, timing, a random-weights bundle."""

from __future__ import annotations

import platform
import tempfile
import time
from pathlib import Path

import torch

from posevit.core.config import ModelConfig
from posevit.core.labels import ACTION_CLASSES
from posevit.models.bundle import Bundle, BundleConfig, load_bundle, save_bundle
from posevit.models.factory import create_model
from posevit.models.transforms import model_data_config

# The replaced system's backbone, with random weights (no hub here): speed does not depend on the values.
VIT_B16 = ModelConfig(name="vit_base_patch16_224", pretrained=False)


def random_bundle(model_cfg: ModelConfig = VIT_B16) -> Bundle:
    """A bundle of `model_cfg` with random weights, written and loaded the way the pipeline does it."""
    with tempfile.TemporaryDirectory() as directory:
        model = create_model(model_cfg, num_classes=len(ACTION_CLASSES))
        config = BundleConfig(
            model_name=model_cfg.name, labels=list(ACTION_CLASSES), data_config=model_data_config(model)
        )
        save_bundle(Path(directory) / "models", model, config)
        return load_bundle(Path(directory) / "models")


def matmul_peak_tflops(dtype: torch.dtype = torch.bfloat16, size: int = 2048, repeats: int = 20) -> float:
    """Best sustained GEMM rate of `dtype` on this machine, measured now (TFLOP/s)."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def machine() -> dict[str, object]:
    return {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
