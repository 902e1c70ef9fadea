"""Where an OpenVINO IR's time goes at batch 1: OpenVINO's own per-layer timings (PERF_COUNT), grouped by what
the layers do, and how fast its linear layers run against the machine's int8 GEMM peak.

    python -m benchmarks.openvino_profile exports/openvino/model.int8.xml [--rounds 30] [--precision f32]

The groups: linear layers (FullyConnected, the int8 GEMMs), attention (its fused MatMul-Softmax-MatMul
subgraphs), the patch embedding (Convolution) and the rest (LayerNorm, quantize, transposes, concats). The
linear layers' multiply-adds come from the compiled model's shapes. `ceiling_ms` is what a lever of the linear
layers alone could reach: everything else as measured, the linear layers at the int8 peak. The int8 GEMM peak
is measured here too (`benchmarks.backends` takes it from this module, and records this profile of ViT-B/16's
int8 IR beside its batch-1 target). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from posevit.core.cores import usable_cores

LINEAR, ATTENTION, PATCH_EMBEDDING, REST = "linear", "attention", "patch_embedding", "rest"


def layer_group(node_type: str, input_rank: int) -> str:
    """Which group a compiled layer's time counts to (OpenVINO fuses attention into a Subgraph of rank-4
    inputs, heads x tokens x channels; a Subgraph of lower rank is fused elementwise work)."""
    if node_type.startswith("FullyConnected") or node_type == "MatMul":
        return LINEAR
    if node_type == "ScaledDotProductAttention" or (node_type == "Subgraph" and input_rank == 4):
        return ATTENTION
    return PATCH_EMBEDDING if node_type == "Convolution" else REST


def linear_macs(op: Any) -> int:
    """Multiply-adds of one compiled linear layer: its input's rows x its weight's (out, in) shape."""
    rows = op.get_input_partial_shape(0).to_shape()
    out_features = op.get_input_partial_shape(1).to_shape()[0]
    return math.prod(rows) * int(out_features)


def profile(xml: Path, precision: str = "f32", rounds: int = 30, int8_peak_tops: float | None = None) -> dict:
    """One image through the IR `rounds` times on this process's cores; each group's mean milliseconds."""
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": usable_cores(),
        "PERFORMANCE_HINT": "LATENCY",
        "PERF_COUNT": True,
    }
    compiled = core.compile_model(core.read_model(xml), "CPU", config)
    request = compiled.create_infer_request()
    size = compiled.input(0).get_partial_shape()[-1].get_length()
    pixels = np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)
    for _ in range(3):  # first calls pick kernels
        request.infer({0: pixels})
    runtime_ops = {op.get_friendly_name(): op for op in compiled.get_runtime_model().get_ops()}
    seconds: Counter[str] = Counter()
    macs = 0
    for round_ in range(rounds):
        request.infer({0: pixels})
        for layer in request.profiling_info:
            op = runtime_ops.get(layer.node_name)
            rank = op.get_input_partial_shape(0).rank.get_length() if op is not None and op.get_input_size() else 0
            group = layer_group(layer.node_type, rank)
            seconds[group] += layer.real_time.total_seconds() / rounds
            if round_ == 0 and group == LINEAR and op is not None:
                macs += linear_macs(op)
    return summary(seconds, macs, int8_peak_tops)


def summary(seconds: Counter[str], macs: int, int8_peak_tops: float | None) -> dict:
    """The groups in ms and shares of the total; the linear layers' rate, and the ceiling at the int8 peak."""
    total = sum(seconds.values())
    result: dict[str, Any] = {
        "total_ms": round(total * 1000, 2),
        "ms": {group: round(seconds[group] * 1000, 2) for group in (LINEAR, ATTENTION, PATCH_EMBEDDING, REST)},
        "share": {group: round(seconds[group] / total, 3) for group in (LINEAR, ATTENTION, PATCH_EMBEDDING, REST)},
        "linear_gmacs": round(macs / 1e9, 4),
        "linear_tops": round(2 * macs / seconds[LINEAR] / 1e12, 3) if seconds[LINEAR] else None,
    }
    return at_int8_peak(result, int8_peak_tops) if int8_peak_tops else result


def at_int8_peak(result: dict, int8_peak_tops: float) -> dict:
    """A profile against this int8 GEMM peak: its linear layers' share of it, and what the image would take were
    they at it, everything else as measured (`benchmarks.backends` restates a profile when its peak moves)."""
    result = result | {"int8_peak_tops": round(int8_peak_tops, 3)}
    if result["ms"][LINEAR]:
        at_peak_ms = 2 * result["linear_gmacs"] * 1e9 / (int8_peak_tops * 1e12) * 1000
        result["linear_share_of_int8_peak"] = round(at_peak_ms / result["ms"][LINEAR], 3)
        result["ceiling_ms"] = round(result["total_ms"] - result["ms"][LINEAR] + at_peak_ms, 2)
    return result


def int8_gemm_peak_tops(size: int = 2048, repeats: int = 20) -> float:
    """Best sustained int8 GEMM rate here (tera int8 ops/s, 2 per multiply-add), measured now: one MatMul with
    int8 weights behind a FakeQuantize, which OpenVINO's CPU plugin runs as an int8 GEMM (VNNI/AMX), the kernel
    NNCF's int8 model runs."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    pixels = ops.parameter([size, size], np.float32)
    bound = [ops.constant(np.float32(v)) for v in (-4.0, 4.0, -4.0, 4.0)]
    quantized = ops.fake_quantize(pixels, *bound, 256)
    weights = ops.constant(rng.integers(-127, 128, (size, size), dtype=np.int8))
    scale = ops.constant(np.full((size, 1), 0.01, np.float32))
    matmul = ops.matmul(quantized, ops.multiply(ops.convert(weights, "f32"), scale), False, True)
    model = ov.Model([matmul], [pixels])
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": usable_cores(), "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    x = rng.standard_normal((size, size), dtype=np.float32)
    for _ in range(3):
        request.infer({0: x})
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer({0: x})
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def say_profile(result: dict) -> str:
    """One line: each group's milliseconds and share, the linear layers' rate against the peak, the ceiling."""
    groups = ", ".join(f"{group} {result['ms'][group]} ms ({result['share'][group]:.0%})" for group in result["ms"])
    line = f"{result['total_ms']} ms in layers: {groups}; linear layers at {result['linear_tops']} TOPS"
    if "ceiling_ms" in result:
        line += (
            f" ({result['linear_share_of_int8_peak']:.0%} of the int8 peak; at the peak the image would take "
            f"{result['ceiling_ms']} ms)"
        )
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml", type=Path, help="an OpenVINO IR (.xml), e.g. exports/openvino/model.int8.xml")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--precision", default="f32", choices=["f32", "bf16"], help="what the unquantized parts run in")
    parser.add_argument("--int8-peak-tops", type=float, help="the machine's int8 GEMM peak (default: measured now)")
    args = parser.parse_args()
    if not args.xml.is_file():
        parser.error(f"{args.xml} not found: export the model first (`dvc repro export`)")
    peak = args.int8_peak_tops or int8_gemm_peak_tops()
    result = profile(args.xml, args.precision, args.rounds, peak)
    print(say_profile(result), file=sys.stderr)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
