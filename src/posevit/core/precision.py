"""The hardware at hand: whether the config's devices exist, and the fastest safe precision, in one place.

Training asks `resolve_precision` (a Lightning precision string); inference asks
`inference_precision` and runs under `autocast` with the same answer, so what the app and
the API report is what ran.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Literal

import torch

from posevit.core.config import TrainerConfig, TrainingPrecision
from posevit.core.errors import ConfigError

InferencePrecision = Literal["bf16", "fp32"]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's share), at least 1."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_supports_bf16() -> bool:
    """True where oneDNN has native bf16 kernels (AVX-512 BF16 or AMX): bf16 is then much faster."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: Literal["auto"] | TrainingPrecision, accelerator: str) -> TrainingPrecision:
    """`auto` -> bf16-mixed on bf16-capable CPUs/GPUs, 16-mixed on older GPUs, else 32-true."""
    if precision != "auto":
        return precision
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    if accelerator in ("cpu", "auto"):
        return "bf16-mixed" if cpu_supports_bf16() else "32-true"
    return "32-true"


def resolve_fused_attention(trainer: TrainerConfig) -> bool:
    """`auto` -> the fused (flash) attention kernel when training on a GPU; plain matmuls on a CPU, where
    the fused kernel's backward is the slow part of a training step (measured: benchmarks/train_throughput)."""
    if trainer.fused_attention != "auto":
        return trainer.fused_attention
    return trainer.accelerator in ("gpu", "cuda") or (trainer.accelerator == "auto" and torch.cuda.is_available())


def inference_precision(device: torch.device | str) -> InferencePrecision:
    """bf16 where the device computes it natively (bf16 CPUs, Ampere+ GPUs), else fp32."""
    device = torch.device(device)
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


def autocast(device: torch.device | str) -> AbstractContextManager:
    """Autocast to bf16 where `inference_precision` says so, else a no-op."""
    device = torch.device(device)
    enabled = inference_precision(device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def check_inference_device(device: str, setting: str = "--device") -> None:
    """Stop before loading anything when `device` names hardware this machine lacks."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{setting}={device} needs a CUDA GPU and this machine has none: use --device cpu")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{setting}=mps needs Apple silicon with MPS: use --device cpu")


def check_hardware(trainer: TrainerConfig) -> None:
    """Stop before any work when the config asks for devices this machine lacks, saying what runs here."""
    wants_gpu = trainer.accelerator in ("gpu", "cuda")
    if wants_gpu and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={trainer.accelerator} needs a CUDA GPU and this machine has none: "
            "add `trainer=cpu` to run here (e.g. `dvc exp run -S experiment=seed_repro -S trainer=cpu`)"
        )
    if wants_gpu and isinstance(trainer.devices, int) and trainer.devices > torch.cuda.device_count():
        raise ConfigError(
            f"trainer.devices={trainer.devices} but this machine has {torch.cuda.device_count()} GPU(s): "
            f"set trainer.devices=auto or <= {torch.cuda.device_count()}"
        )
    if trainer.accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("trainer.accelerator=mps needs Apple silicon with MPS: add `trainer=cpu` to run here")
