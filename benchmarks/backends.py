"""Inference backends side by side, in one run: PyTorch fp32, PyTorch bf16 (the default path), ONNX Runtime fp32
and int8 (dynamic quantization), OpenVINO fp32 and NNCF static int8 (the rest in f32, and in bf16 where native),
on ViT-B/16 with random weights and on the demo bundle; and the machine's fp32, bf16 and int8 GEMM peaks.

    python -m benchmarks.backends [--repeats 30] [--batch-size 32] [--device cpu] [--model NAME] [--skip-vit-b]

For each model and backend: p50 latency of one image, images/s at batch 32 (OpenVINO int8 also with a stream per
core and an image in flight on each, as the server runs it under load), and the share of its precision's
GEMM peak both reach (the model's FLOPs counted by PyTorch, the IRs' those of the token-split model they are made
from; int8 backends against the int8 peak). ViT-B/16's int8 IR is also made without the token split and timed in
the same turns (`token_split_p50_vs_one_group`: what the split buys), and its batch-1 time is split by layer
group (`openvino_int8_batch1_profile`, from `benchmarks.openvino_profile`). For the demo
bundle (models/ and exports/ of this checkout, after `make demo`) also each backend's accuracy on
data/processed/test. ViT-B/16 is exported here, as the export stage does it (`--model` names a smaller timm ViT
for a shorter run, written to backends-<model>.json). Prints JSON.
Targets (issue 21), ViT-B/16: OpenVINO int8 batch-1 p50 <= 0.4x PyTorch bf16's, its best throughput >= 1.6x
ONNX Runtime dynamic int8's and >= 60% of the int8 peak; ONNX Runtime int8 p50 <= 0.6x PyTorch bf16's. Demo: each
int8 backend's accuracy within 0.005 of PyTorch fp32's. The peaks are measured before and after the timings and
the higher taken (a neighbour busy during one measurement would otherwise halve it).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import VIT_B16, machine, matmul_peak_tflops, write_random_bundle, write_result
from benchmarks.openvino_profile import at_int8_peak, int8_gemm_peak_tops, profile, say_profile
from posevit.core.config import ExportConfig, ModelConfig
from posevit.core.cores import usable_cores
from posevit.core.paths import EXPORTS_DIR, MODELS_DIR
from posevit.core.precision import cpu_supports_bf16
from posevit.export.onnx import FP32_FILE, INT8_FILE, export_onnx, quantize_int8
from posevit.export.openvino_ir import FP32_IR, INT8_IR, quantize_static_int8, write_fp32_ir
from posevit.export.token_split import token_split_model
from posevit.models.bundle import Bundle, load_bundle
from posevit.models.factory import set_fused_attention
from posevit.models.onnx_runtime import OnnxModel
from posevit.models.openvino_runtime import HintPrecision, OpenVinoModel, cpu_has_native_bf16

LogitsFn = Callable[[np.ndarray], np.ndarray]
TARGET_INT8_VS_BF16 = 0.6
TARGET_OPENVINO_INT8_VS_BF16 = 0.4
TARGET_OPENVINO_THROUGHPUT_VS_ONNX_INT8 = 1.6
TARGET_OPENVINO_SHARE_OF_INT8_PEAK = 0.6
TARGET_INT8_ACCURACY_DROP = 0.005
OPENVINO_INT8: dict[str, HintPrecision] = {"openvino_int8": "f32", "openvino_int8_bf16": "bf16"}  # the unquantized rest


def int8_hints() -> dict[str, HintPrecision]:
    """The OpenVINO int8 variants this CPU runs: the rest in f32, and in bf16 where the CPU has it natively."""
    return {name: hint for name, hint in OPENVINO_INT8.items() if hint == "f32" or cpu_has_native_bf16()}


def torch_runner(bundle: Bundle, device: str, bf16: bool) -> LogitsFn:
    model = bundle.model.float().eval().to(device)

    @torch.inference_mode()
    def run(pixels: np.ndarray) -> np.ndarray:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
            return model(torch.from_numpy(pixels).to(device)).float().cpu().numpy()

    return run


PRECISION_OF = {  # which GEMM peak each backend's share is taken of (int8: its linear layers' GEMMs)
    "torch_fp32": "fp32",
    "torch_bf16": "bf16",
    "onnx_fp32": "fp32",
    "onnx_int8": "int8",
    "openvino_fp32": "fp32",
    "openvino_int8": "int8",
    "openvino_int8_bf16": "int8",
    "openvino_int8_one_group": "int8",
}
SPLIT_IRS = ("openvino_fp32", "openvino_int8", "openvino_int8_bf16")  # made with the token split, as the stage does
ONE_GROUP = "one-group"  # the int8 IR made without export.openvino_token_split, timed beside it (ViT-B/16 only)


def runners(bundle: Bundle, exports: Path, device: str) -> dict[str, LogitsFn]:
    found = {
        "torch_fp32": torch_runner(bundle, device, bf16=False),
        "torch_bf16": torch_runner(bundle, device, bf16=True),
        "onnx_fp32": OnnxModel(exports / FP32_FILE, device, spinning=False).logits,
        "onnx_int8": OnnxModel(exports / INT8_FILE, device, spinning=False).logits,
    }
    if device == "cpu" and (exports / FP32_IR).is_file():  # exports of a checkout older than the OpenVINO ones lack it
        found["openvino_fp32"] = OpenVinoModel(exports / FP32_IR, "f32").logits
    if device == "cpu" and (exports / INT8_IR).is_file():
        found |= {name: OpenVinoModel(exports / INT8_IR, hint).logits for name, hint in int8_hints().items()}
    if device == "cpu" and (exports / ONE_GROUP / INT8_IR).is_file():
        found["openvino_int8_one_group"] = OpenVinoModel(exports / ONE_GROUP / INT8_IR, "f32").logits
    return found


def streamed_runners(exports: Path, streams: int) -> dict[str, tuple[LogitsFn, int]]:
    """The OpenVINO int8 IR as `posevit serve` runs it under load: compiled with `streams` streams (its THROUGHPUT
    hint), each call on a request of its own; with the stream count it compiled to. None on one core."""
    if streams < 2 or not (exports / INT8_IR).is_file():
        return {}
    models = {name: OpenVinoModel(exports / INT8_IR, hint, streams=streams) for name, hint in int8_hints().items()}
    return {name: (model.logits, model.streams) for name, model in models.items()}


def streamed_rates(streamed: dict[str, tuple[LogitsFn, int]], pixels: np.ndarray, rounds: int) -> dict[str, float]:
    """Median images/s of each streamed backend with one single-image call per stream always in flight (4 per
    stream a round), timed in turns as the others are."""
    rates: dict[str, list[float]] = {name: [] for name in streamed}
    with ThreadPoolExecutor(max(streams for _, streams in streamed.values())) as pool:
        for round_ in range(rounds + 1):
            for name, (run, streams) in streamed.items():
                calls = 4 * streams
                start = time.perf_counter()
                list(pool.map(run, [pixels] * calls))
                if round_:  # the first round allocates each stream's buffers
                    rates[name].append(calls / (time.perf_counter() - start))
    return {name: float(np.median(values)) for name, values in rates.items()}


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


def speed(
    backends: dict[str, LogitsFn],
    size: int,
    repeats: int,
    batch_size: int,
    flops: dict[str, float] | None = None,
    peaks: dict[str, float] | None = None,
    streamed: dict[str, tuple[LogitsFn, int]] | None = None,
) -> dict[str, object]:
    """Batch-1 p50 and batch throughput of each backend, and of the `streamed` ones their images/s with a
    single-image call in flight per stream; with the model's FLOPs and the GEMM peaks, each one's share of its
    precision's peak (what is left to gain)."""
    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 3, size, size), dtype=np.float32)
    one = interleaved_medians(backends, image, repeats)
    batch = rng.standard_normal((batch_size, 3, size, size), dtype=np.float32)
    many = interleaved_medians(backends, batch, max(2, repeats // 10))
    streams = {name: count for name, (_, count) in (streamed or {}).items()}
    rates = streamed_rates(streamed, image, max(2, repeats // 10)) if streamed else {}
    figures: dict[str, object] = {}
    for name in backends:
        row: dict[str, object] = {
            "batch1_p50_ms": round(one[name] * 1000, 2),
            f"batch{batch_size}_images_per_s": round(batch_size / many[name], 1),
        }
        if name in rates:
            row[f"streams{streams[name]}_images_per_s"] = round(rates[name], 1)
        if flops and peaks:
            peak = peaks[PRECISION_OF[name]]
            row["precision_peak"] = PRECISION_OF[name]
            row["batch1_share_of_peak"] = round(flops[name] / one[name] / 1e12 / peak, 3)
            row[f"batch{batch_size}_share_of_peak"] = round(flops[name] * batch_size / many[name] / 1e12 / peak, 3)
            if name in rates:
                row[f"streams{streams[name]}_share_of_peak"] = round(flops[name] * rates[name] / 1e12 / peak, 3)
        figures[name] = row
    ratios = {
        "int8_p50_vs_torch_bf16": round(one["onnx_int8"] / one["torch_bf16"], 3),
        "int8_p50_vs_torch_fp32": round(one["onnx_int8"] / one["torch_fp32"], 3),
        "onnx_fp32_p50_vs_torch_fp32": round(one["onnx_fp32"] / one["torch_fp32"], 3),
        f"int8_batch{batch_size}_speedup_vs_torch_bf16": round(many["torch_bf16"] / many["onnx_int8"], 2),
    }
    onnx_int8_best = max(1 / one["onnx_int8"], batch_size / many["onnx_int8"])
    if flops and peaks and peaks["int8"] > 0:  # the ceilings: every image of the int8 IR at the int8 GEMM peak
        at_peak_s = flops.get("openvino_int8", flops["onnx_int8"]) / (peaks["int8"] * 1e12)
        ratios["int8_peak_p50_vs_torch_bf16"] = round(at_peak_s / one["torch_bf16"], 3)
        ratios["int8_peak_throughput_vs_onnx_int8"] = round(1 / at_peak_s / onnx_int8_best, 2)
    if "openvino_int8_one_group" in backends:  # what the token split buys, in the same turns
        ratios["token_split_p50_vs_one_group"] = round(one["openvino_int8"] / one["openvino_int8_one_group"], 3)
    for name in OPENVINO_INT8:
        if name in backends:
            ratios[f"{name}_p50_vs_torch_bf16"] = round(one[name] / one["torch_bf16"], 3)
            best = max(1 / one[name], batch_size / many[name], rates.get(name, 0.0))
            ratios[f"{name}_best_throughput_vs_onnx_int8"] = round(best / onnx_int8_best, 2)
    figures["ratios"] = ratios
    print(json.dumps(figures), file=sys.stderr)
    return figures


def flops_per_image(model: torch.nn.Module, size: int) -> float:
    """A model's floating-point operations for one image (2 per multiply-add), counted by PyTorch. Attention's own
    products count too: timm's attention runs unfused for the count, as PyTorch's counter does not see inside the
    fused kernel (and the token-split model's attention, which is written out, it does see)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    fused = {module: module.fused_attn for module in model.modules() if hasattr(module, "fused_attn")}
    set_fused_attention(model, False)
    try:
        with counter, torch.inference_mode():
            model.float().eval()(torch.zeros(1, 3, size, size))
    finally:
        for module, was in fused.items():  # as it was: the timings that follow run the model as loaded
            module.fused_attn = was
    return float(counter.get_total_flops())


def flops_by_backend(bundle: Bundle, backends: dict[str, LogitsFn]) -> dict[str, float]:
    """What each backend computes per image: the model's FLOPs, and for the IRs the token-split model's (the work
    it leaves out, the last block's beyond the class token, is not counted as done)."""
    size = bundle.data_config["input_size"][-1]
    full = flops_per_image(bundle.model, size)
    split = token_split_model(bundle.model, tuple(bundle.data_config["input_size"]))
    ir = full if isinstance(split, str) else flops_per_image(split, size)
    return {name: ir if name in SPLIT_IRS else full for name in backends}


def accuracy(bundle: Bundle, backends: dict[str, LogitsFn], batch_size: int) -> dict[str, float]:
    """Each backend's accuracy on the processed test split, beside PyTorch fp32's."""
    from posevit.data.store import load_split
    from posevit.export.parity import test_split_logits

    labels, logits = test_split_logits(bundle, load_split("test"), batch_size, backends)
    scores = {name: round(float((values.argmax(1) == labels).mean()), 4) for name, values in logits.items()}
    scores["int8_accuracy_drop"] = round(scores["pytorch"] - scores["onnx_int8"], 4)
    scores["n_test"] = len(labels)
    return scores


def export_all(bundle: Bundle, exports: Path, calibration_images: int, one_group: bool = False) -> None:
    """The export stage's five files (ONNX fp32 + dynamic int8, OpenVINO IR fp32 + NNCF static int8, the IR token
    split as the stage splits it), calibrated on random pixels (speed does not depend on the scales' values); with
    `one_group` also the int8 IR without the token split, in exports/one-group/."""
    started = time.perf_counter()
    cfg = ExportConfig()
    fp32 = export_onnx(bundle, exports / FP32_FILE, opset=cfg.opset)
    quantize_int8(fp32, exports / INT8_FILE)
    size = bundle.data_config["input_size"][-1]
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((1, 3, size, size), dtype=np.float32) for _ in range(calibration_images)]
    irs = [(exports, True), (exports / ONE_GROUP, False)] if one_group else [(exports, True)]
    for folder, split in irs:
        write_fp32_ir(bundle, fp32, folder / FP32_IR, cfg.opset, token_split=split)
        quantize_static_int8(folder / FP32_IR, folder / INT8_IR, batches, np.asarray, calibration_images, 0.15)
    print(
        f"exported {bundle.config.model_name} (ONNX, OpenVINO IR) in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )


def large_model(args: argparse.Namespace, peaks: dict[str, float]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        bundle = load_bundle(write_random_bundle(root / "models", ModelConfig(name=args.model, pretrained=False)))
        export_all(bundle, root / "exports", args.calibration_images, one_group=True)
        size = bundle.data_config["input_size"][-1]
        backends = runners(bundle, root / "exports", args.device)
        flops = flops_by_backend(bundle, backends)
        streamed = streamed_runners(root / "exports", usable_cores())
        figures = speed(backends, size, args.repeats, args.batch_size, flops, peaks, streamed)
        if "openvino_int8" in backends:  # where its batch-1 time goes, against the int8 peak measured before
            figures["openvino_int8_batch1_profile"] = profile(
                root / "exports" / INT8_IR, "f32", args.repeats, peaks["int8"]
            )
    return {
        "model": args.model,
        "input_size": size,
        "gflops_per_image": round(flops["torch_fp32"] / 1e9, 2),
        "ir_gflops_per_image": round(flops.get("openvino_int8", flops["torch_fp32"]) / 1e9, 2),
        **figures,
        "targets": large_model_targets(figures, args.batch_size),
    }


def large_model_targets(figures: dict[str, object], batch_size: int) -> dict[str, object]:
    """Each of issue 21's targets: the figure, the bound, met or not (the best OpenVINO int8 variant counts)."""
    ratios: dict[str, float] = figures["ratios"]  # type: ignore[assignment]
    variants = [name for name in OPENVINO_INT8 if name in figures]
    targets: dict[str, object] = {
        "onnx_int8_p50_vs_torch_bf16": _target(ratios["int8_p50_vs_torch_bf16"], "<=", TARGET_INT8_VS_BF16)
    }
    if variants:
        share = max(
            value
            for row in (figures[name] for name in variants)
            for key, value in row.items()  # type: ignore[attr-defined]
            if key.endswith("_share_of_peak")  # batch 1, the batch, the streams
        )
        targets |= {
            "openvino_int8_p50_vs_torch_bf16": _target(
                min(ratios[f"{name}_p50_vs_torch_bf16"] for name in variants),
                "<=",
                TARGET_OPENVINO_INT8_VS_BF16,
                ratios.get("int8_peak_p50_vs_torch_bf16"),
            ),
            "openvino_int8_best_throughput_vs_onnx_int8": _target(
                max(ratios[f"{name}_best_throughput_vs_onnx_int8"] for name in variants),
                ">=",
                TARGET_OPENVINO_THROUGHPUT_VS_ONNX_INT8,
                ratios.get("int8_peak_throughput_vs_onnx_int8"),
            ),
            "openvino_int8_best_share_of_int8_peak": _target(share, ">=", TARGET_OPENVINO_SHARE_OF_INT8_PEAK),
        }
    return targets


def _target(value: float, relation: str, bound: float, ceiling: float | None = None) -> dict[str, object]:
    """A figure against its bound; `ceiling` is the best figure the machine allows (all at the int8 peak)."""
    met = value <= bound if relation == "<=" else value >= bound
    target: dict[str, object] = {"value": round(value, 3), "target": f"{relation} {bound}", "met": met}
    return target if ceiling is None else target | {"ceiling_at_int8_peak": ceiling}


def demo(args: argparse.Namespace, peaks: dict[str, float]) -> dict[str, object]:
    if not (MODELS_DIR.is_dir() and (EXPORTS_DIR / INT8_FILE).is_file()):
        return {"skipped": f"no {MODELS_DIR}/ and {EXPORTS_DIR}/ here: run `make demo` first"}
    bundle = load_bundle(MODELS_DIR)
    size = bundle.data_config["input_size"][-1]
    backends = runners(bundle, EXPORTS_DIR, args.device)
    figures = speed(backends, size, args.repeats, args.batch_size, flops_by_backend(bundle, backends), peaks)
    scores = accuracy(bundle, {k: v for k, v in backends.items() if k != "torch_fp32"}, args.batch_size)
    return {
        "model": bundle.config.model_name,
        "input_size": size,
        **figures,
        "accuracy": scores,
        "targets": {
            f"{name}_accuracy_drop": _target(scores["pytorch"] - scores[name], "<=", TARGET_INT8_ACCURACY_DROP)
            for name in ("onnx_int8", *OPENVINO_INT8)
            if name in scores
        },
    }


def measure_peaks(device: str) -> dict[str, float]:
    """The machine's bf16 and fp32 GEMM peaks (TFLOP/s) and int8 GEMM peak (TOPS), measured now."""
    return {
        "bf16": matmul_peak_tflops(torch.bfloat16),
        "fp32": matmul_peak_tflops(torch.float32),
        "int8": int8_gemm_peak_tops() if device == "cpu" else float("nan"),
    }


def peak_fields(peaks: dict[str, float]) -> dict[str, float]:
    return {
        "bf16_matmul_peak_tflops": round(peaks["bf16"], 3),
        "fp32_matmul_peak_tflops": round(peaks["fp32"], 3),
        "int8_gemm_peak_tops": round(peaks["int8"], 3),  # OpenVINO's int8 GEMM (VNNI/AMX), 2 ops per MAC
    }


def rescale_shares(figures: dict[str, object], used: dict[str, float], peaks: dict[str, float]) -> None:
    """Shares of peak taken against `used` restated against `peaks` (the higher of the two measurements), and so the
    ceilings at the int8 peak and the batch-1 profile's."""
    for row in figures.values():
        if isinstance(row, dict) and "precision_peak" in row:
            factor = used[row["precision_peak"]] / peaks[row["precision_peak"]]
            for key in [key for key in row if key.endswith("_share_of_peak")]:
                row[key] = round(row[key] * factor, 3)
    ratios = figures.get("ratios")
    if isinstance(ratios, dict) and "int8_peak_p50_vs_torch_bf16" in ratios:  # time at the peak: used / peaks
        factor = used["int8"] / peaks["int8"]
        ratios["int8_peak_p50_vs_torch_bf16"] = round(ratios["int8_peak_p50_vs_torch_bf16"] * factor, 3)
        ratios["int8_peak_throughput_vs_onnx_int8"] = round(ratios["int8_peak_throughput_vs_onnx_int8"] / factor, 2)
    profiled = figures.get("openvino_int8_batch1_profile")
    if isinstance(profiled, dict):
        figures["openvino_int8_batch1_profile"] = at_int8_peak(profiled, peaks["int8"])


def print_shares(name: str, figures: dict[str, object]) -> None:
    """Each backend's share of its precision's GEMM peak, one line each: how far from the machine's limit it runs."""
    for backend, row in figures.items():
        if isinstance(row, dict) and "precision_peak" in row:
            shares = [
                f"{key.split('_')[0]} {value:.0%}" for key, value in row.items() if key.endswith("_share_of_peak")
            ]
            print(f"{name} {backend:<20} of the {row['precision_peak']} peak: {', '.join(shares)}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="batch-1 timings per backend (batch timings: 1/10)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (ONNX Runtime then needs its CUDA provider)")
    parser.add_argument(
        "--model", default=VIT_B16.name, help="the large model, random weights (another timm ViT: a shorter run)"
    )
    parser.add_argument("--calibration-images", type=int, default=32, help="NNCF's calibration set (random pixels)")
    parser.add_argument(
        "--skip-vit-b", action="store_true", help="only the demo bundle (the ViT-B/16 export takes minutes)"
    )
    args = parser.parse_args()
    peaks = measure_peaks(args.device)
    report: dict[str, object] = {
        "benchmark": "backends",
        "machine": {
            **machine(),
            "cpu_has_native_bf16": cpu_supports_bf16(),
            **peak_fields(peaks),
        },
        "demo": demo(args, peaks),
    }
    key = "vit_b16" if args.model == VIT_B16.name else "vit"
    if not args.skip_vit_b:
        report[key] = large_model(args, peaks)
    after = measure_peaks(args.device)
    higher = {name: max(peaks[name], after[name]) for name in peaks}
    machine_row: dict[str, object] = report["machine"]  # type: ignore[assignment]
    machine_row |= {f"{name}_peak_before_after": [round(peaks[name], 3), round(after[name], 3)] for name in peaks}
    machine_row |= peak_fields(higher)
    for section in ("demo", key):
        figures = report.get(section)
        if isinstance(figures, dict):
            rescale_shares(figures, peaks, higher)
            if section == key:  # its shares of peak moved: so may its targets
                figures["targets"] = large_model_targets(figures, args.batch_size)
            print_shares(section, figures)
            if "openvino_int8_batch1_profile" in figures:
                print(
                    f"{section} openvino_int8 batch 1: {say_profile(figures['openvino_int8_batch1_profile'])}",
                    file=sys.stderr,
                )
    print(json.dumps(report, indent=2))
    name = "backends" if key == "vit_b16" else f"backends-{args.model}"
    write_result("backends-demo" if args.skip_vit_b else name, report)


if __name__ == "__main__":
    main()
