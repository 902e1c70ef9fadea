"""Shared measuring tools for the benchmarks: the machine's bf16 matmul peak and timing helpers."""

from __future__ import annotations

import platform
import time

import torch


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
    return {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
            "torch": torch.__version__}
