"""Inference backends side by side, in one run: PyTorch fp32, PyTorch bf16 (the default path), ONNX Runtime fp32
and ONNX Runtime int8 (dynamic quantization), on ViT-B/16 with random weights and on the demo bundle.

    python -m benchmarks.backends [--repeats 30] [--batch-size 32] [--device cpu] [--skip-vit-b]

For each model and backend: p50 latency of one image and images/s at batch 32. For the demo
bundle (models/ and exports/ of this checkout, after `make demo`) also each backend's accuracy
on data/processed/test. ViT-B/16 is exported here, as the export stage does it. Prints JSON.
Targets: ViT-B/16 int8 batch-1 p50 <= 0.6x the PyTorch bf16 p50; demo int8 accuracy within
0.01 of PyTorch fp32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import VIT_B16, machine, matmul_peak_tflops, write_random_bundle, write_result
from posevit.core.paths import EXPORTS_DIR, MODELS_DIR
from posevit.core.precision import cpu_supports_bf16
from posevit.export.onnx import FP32_FILE, INT8_FILE, export_onnx, quantize_int8
from posevit.models.bundle import Bundle, load_bundle
from posevit.models.onnx_runtime import OnnxModel

LogitsFn = Callable[[np.ndarray], np.ndarray]
TARGET_INT8_VS_BF16 = 0.6
TARGET_INT8_ACCURACY_DROP = 0.01


def torch_runner(bundle: Bundle, device: str, bf16: bool) -> LogitsFn:
    model = bundle.model.float().eval().to(device)

    @torch.inference_mode()
    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            return model(torch.from_numpy(pixels).to(device)).float().cpu().numpy()

    return run


def runners(bundle: Bundle, exports: Path, device: str) -> dict[str, LogitsFn]:
    return {
        "torch_fp32": torch_runner(bundle, device, bf16=False),
        "torch_bf16": torch_runner(bundle, device, bf16=True),
        "onnx_fp32": OnnxModel(exports / FP32_FILE, device, spinning=False).logits,
        "onnx_int8": OnnxModel(exports / INT8_FILE, device, spinning=False).logits,
    }


def interleaved_medians(backends: dict[str, LogitsFn], pixels: np.ndarray, rounds: int) -> dict[str, float]:
    """Median seconds per call of each backend, timed in turns (A B C D, A B C D, ...).

    Turns share whatever else the machine is doing (a VM's neighbours, clock changes), so their
    ratios hold even when the absolute figures drift during the run.
    """
    for run in backends.values():
        run(pixels)  # first calls allocate and pick kernels
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(rounds):
        for name, run in backends.items():
            start = time.perf_counter()
            run(pixels)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def speed(backends: dict[str, LogitsFn], size: int, repeats: int, batch_size: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    one = interleaved_medians(backends, rng.standard_normal((1, 3, size, size), dtype=np.float32), repeats)
    batch = rng.standard_normal((batch_size, 3, size, size), dtype=np.float32)
    many = interleaved_medians(backends, batch, max(2, repeats // 10))
    figures: dict[str, object] = {
        name: {
            "batch1_p50_ms": round(one[name] * 1000, 2),
            f"batch{batch_size}_images_per_s": round(batch_size / many[name], 1),
        }
        for name in backends
    }
    figures["ratios"] = {
        "int8_p50_vs_torch_bf16": round(one["onnx_int8"] / one["torch_bf16"], 3),
        "int8_p50_vs_torch_fp32": round(one["onnx_int8"] / one["torch_fp32"], 3),
        "onnx_fp32_p50_vs_torch_fp32": round(one["onnx_fp32"] / one["torch_fp32"], 3),
        f"int8_batch{batch_size}_speedup_vs_torch_bf16": round(many["torch_bf16"] / many["onnx_int8"], 2),
    }
    print(json.dumps(figures), file=sys.stderr)
    return figures


def accuracy(bundle: Bundle, backends: dict[str, LogitsFn], batch_size: int) -> dict[str, float]:
    """Each backend's accuracy on the processed test split, beside PyTorch fp32's."""
    from posevit.data.store import load_split
    from posevit.export.parity import test_split_logits

    labels, logits = test_split_logits(bundle, load_split("test"), batch_size, backends)
    scores = {name: round(float((values.argmax(1) == labels).mean()), 4) for name, values in logits.items()}
    scores["int8_accuracy_drop"] = round(scores["pytorch"] - scores["onnx_int8"], 4)
    scores["n_test"] = len(labels)
    return scores


def vit_b16(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        bundle = load_bundle(write_random_bundle(root / "models", VIT_B16))
        started = time.perf_counter()
        quantize_int8(export_onnx(bundle, root / "exports" / FP32_FILE, opset=18), root / "exports" / INT8_FILE)
        print(f"exported ViT-B/16 to ONNX fp32 + int8 in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        figures = speed(runners(bundle, root / "exports", args.device), 224, args.repeats, args.batch_size)
    ratio = figures["ratios"]["int8_p50_vs_torch_bf16"]  # type: ignore[index]
    return {
        "model": VIT_B16.name,
        **figures,
        "target_int8_p50_vs_torch_bf16": TARGET_INT8_VS_BF16,
        "target_met": ratio <= TARGET_INT8_VS_BF16,
    }


def demo(args: argparse.Namespace) -> dict[str, object]:
    if not (MODELS_DIR.is_dir() and (EXPORTS_DIR / INT8_FILE).is_file()):
        return {"skipped": f"no {MODELS_DIR}/ and {EXPORTS_DIR}/ here: run `make demo` first"}
    bundle = load_bundle(MODELS_DIR)
    size = bundle.data_config["input_size"][-1]
    backends = runners(bundle, EXPORTS_DIR, args.device)
    figures = speed(backends, size, args.repeats, args.batch_size)
    scores = accuracy(bundle, {k: v for k, v in backends.items() if k != "torch_fp32"}, args.batch_size)
    return {
        "model": bundle.config.model_name,
        "input_size": size,
        **figures,
        "accuracy": scores,
        "target_int8_accuracy_drop": TARGET_INT8_ACCURACY_DROP,
        "target_met": scores["int8_accuracy_drop"] <= TARGET_INT8_ACCURACY_DROP,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="batch-1 timings per backend (batch timings: 1/10)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ONNX Runtime then needs its CUDA provider)")
    parser.add_argument(
        "--skip-vit-b", action="store_true", help="only the demo bundle (the ViT-B/16 export takes minutes)"
    )
    args = parser.parse_args()
    report: dict[str, object] = {
        "benchmark": "backends",
        "machine": {
            **machine(),
            "cpu_has_native_bf16": cpu_supports_bf16(),
            "bf16_matmul_peak_tflops": round(matmul_peak_tflops(torch.bfloat16), 3),
            "fp32_matmul_peak_tflops": round(matmul_peak_tflops(torch.float32), 3),
        },
        "demo": demo(args),
    }
    if not args.skip_vit_b:
        report["vit_b16"] = vit_b16(args)
    print(json.dumps(report, indent=2))
    write_result("backends-demo" if args.skip_vit_b else "backends", report)


if __name__ == "__main__":
    main()
