"""Shared measuring tools for the benchmarks: the machine's bf16 matmul peak, timing, a random-weights bundle,
and the one place a result is written (benchmarks/results/<name>.json, committed; docs/benchmarks.md is
rendered from those files by `python -m benchmarks.render_docs`)."""

from __future__ import annotations

import datetime
import functools
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from posevit.core.config import ModelConfig
from posevit.core.labels import ACTION_CLASSES
from posevit.models.bundle import Bundle, load_bundle, save_bundle
from posevit.models.bundle_config import BundleConfig
from posevit.models.factory import create_model
from posevit.models.transforms import model_data_config

# The replaced system's backbone, with random weights (no hub here): speed does not depend on the values.
VIT_B16 = ModelConfig(name="vit_base_patch16_224", pretrained=False)


def write_random_bundle(directory: Path, model_cfg: ModelConfig = VIT_B16) -> Path:
    """Write a bundle of `model_cfg` with random weights into `directory`, as the train stage would."""
    model = create_model(model_cfg, num_classes=len(ACTION_CLASSES))
    config = BundleConfig(model_name=model_cfg.name, labels=list(ACTION_CLASSES), data_config=model_data_config(model))
    save_bundle(directory, model, config)
    return directory


def random_bundle(model_cfg: ModelConfig = VIT_B16) -> Bundle:
    """A bundle of `model_cfg` with random weights, written and loaded the way the pipeline does it."""
    with tempfile.TemporaryDirectory() as directory:
        return load_bundle(write_random_bundle(Path(directory) / "models", model_cfg))


def percentiles(seconds: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(seconds, 50)) * 1000, 1),
        "p95_ms": round(float(np.percentile(seconds, 95)) * 1000, 1),
    }


def photo_jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    """A 640x480 photo-sized JPEG (smooth colour fields, as photos compress)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    small.resize((width, height), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def matmul_peak_tflops(
    dtype: torch.dtype = torch.bfloat16, size: int | None = None, repeats: int = 20, device: str = "cpu"
) -> float:
    """Best sustained GEMM rate of `dtype` on `device`, measured now (TFLOP/s)."""
    size = size or gemm_size(dtype, device)
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


@functools.cache  # a benchmark measures its peaks several times: probe the size once
def gemm_size(dtype: torch.dtype, device: str, most_s: float = 1.0) -> int:
    """The side of the GEMM that reaches the peak: 2048 (8192 on a GPU), smaller where one would take longer than
    `most_s` (bf16 on a CPU without native bf16 runs a reference kernel at ~1 GFLOP/s: 14 s for one 2048 GEMM)."""
    largest = 8192 if device == "cuda" else 2048
    size = 256
    while size < largest:
        a = torch.randn(size, size, dtype=dtype, device=device)
        a @ a  # the first call picks the kernel
        synchronize(device)
        start = time.perf_counter()
        a @ a
        synchronize(device)
        if (time.perf_counter() - start) * 8 > most_s:  # the next size does 8x the work
            break
        size *= 2
    return size


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so wall time measures it (a no-op on CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def machine(device: str = "cpu") -> dict[str, object]:
    facts: dict[str, object] = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    if device == "cuda":
        facts["gpu"] = torch.cuda.get_device_name()
    return facts


RESULTS_DIR = Path(__file__).parent / "results"
# Tests point this elsewhere, so a toy-sized run never replaces a committed result.
RESULTS_DIR_ENV = "POSEVIT_BENCHMARK_RESULTS"


def _cpuinfo(field: str) -> str | None:
    """The first CPU's `field` in /proc/cpuinfo ("model name", "flags"), None where there is none."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == field), None)


def _cpu_model() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


VECTOR_FEATURES = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cpu_features() -> list[str]:
    """Which of the vector instruction sets the GEMM kernels use this CPU has (bf16 and int8 peaks follow them)."""
    flags = (_cpuinfo("flags") or "").split()
    return [name for name in VECTOR_FEATURES if name in flags]


def _git_commit() -> str | None:
    """The checkout's commit, marked `-dirty` when tracked files differ from it (what was measured)."""
    root = Path(__file__).parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True)
    except OSError:
        return None
    if commit.returncode:
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _command_line() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"python -m {spec.name}" if spec is not None else f"python {sys.argv[0]}"
    return " ".join([program, *(shlex.quote(arg) for arg in sys.argv[1:])])


def write_result(name: str, payload: dict[str, object], source: str = "measured by the command above") -> Path | None:
    """Write one benchmark run as benchmarks/results/<name>.json: the machine, date, commit, command and figures.

    A run that measured nothing (its payload says "skipped") keeps the previous result.
    """
    if "skipped" in payload:
        print(f"nothing measured ({payload['skipped']}): benchmarks/results/{name}.json kept", file=sys.stderr)
        return None
    directory = Path(os.environ.get(RESULTS_DIR_ENV) or RESULTS_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "command": _command_line(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": _git_commit(),
        "machine": {
            "cpu_model": _cpu_model(),
            "cpu_features": cpu_features(),  # the instruction sets the figures depend on: another class, other figures
            "cores": len(os.sched_getaffinity(0)),
            # Other work on the machine while it ran (a shared VM's neighbours slow the absolute figures).
            "load_average_1min": round(os.getloadavg()[0], 2),
            **machine(),
        },
        "source": source,
        "result": payload,
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return path
