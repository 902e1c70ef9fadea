"""Pick the fastest numerically safe precision for the hardware at hand."""

from __future__ import annotations

import torch


def cpu_supports_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX-512 BF16 or AMX): bf16 is then much faster."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, accelerator: str) -> str:
    """`auto` -> bf16-mixed on bf16-capable CPUs/GPUs, 16-mixed on older GPUs, else 32-true."""
    if precision != "auto":
        return precision
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("cpu", "auto"):
        return "bf16-mixed" if cpu_supports_bf16() else "32-true"
    return "32-true"
