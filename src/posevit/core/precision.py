"""The hardware at hand: whether the config's devices exist, and the fastest safe precision, in one place.

Training asks `resolve_precision` (a Lightning precision string); inference asks
`inference_precision` and runs under `autocast` with the same answer, so what the app and
the API report is what ran.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Literal

import torch

from posevit.core.config import Precision, TrainerConfig, TrainingPrecision
from posevit.core.errors import ConfigError

InferencePrecision = Literal["bf16", "fp32"]
# bf16's 8-bit significand rounds each stored value by up to 2**-8 (relative); a forward pass stacks a few
# such roundings, so a probability in [0, 1] can sit up to 2**-6 from fp32's answer (measured: 0.005 on the
# tests' random bundles), and two bf16 batches of the same image at most that apart from each other.
BF16_PROBABILITY_TOLERANCE = 2**-6


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


def inference_precision(device: torch.device | str, requested: Precision = "auto") -> InferencePrecision:
    """`auto`: bf16 where the device computes it natively (bf16 CPUs, Ampere+ GPUs), else fp32.

    fp32 is exact to ~1e-6 whatever the batch; bf16 keeps 8 significant bits, so an image's probabilities
    may move by up to BF16_PROBABILITY_TOLERANCE with what else is in its batch (GEMM blocking, and so
    rounding, depends on the batch size and the CPU)."""
    if requested != "auto":
        return requested
    device = torch.device(device)
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "fp32"


def autocast(device: torch.device | str, precision: InferencePrecision | None = None) -> AbstractContextManager:
    """Autocast to bf16 where `precision` (default: `inference_precision(device)`) says so, else a no-op."""
    device = torch.device(device)
    enabled = (precision or inference_precision(device)) == "bf16"
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
