"""App latency: single-image latency of the app's predict path (`Predictor.predict`: eval transform,
bf16 where fast) against a plain fp32 per-image call of the same model (ViT-B/16, 224 px), same run.

    python -m benchmarks.app_latency [--runs 30]

Prints JSON with p50/p95 of both; target: app p50 <= 1/3 of the fp32 p50.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image

from benchmarks.common import VIT_B16, machine, matmul_peak_tflops, percentiles, random_bundle, write_result
from posevit.infer.torch_predictor import TorchPredictor

MODEL = VIT_B16


def time_calls(call, runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize(
        (640, 480), Image.Resampling.BICUBIC
    )
    bundle = random_bundle(MODEL)
    predictor = TorchPredictor(bundle)
    app = time_calls(lambda: predictor.predict(photo), args.runs)

    transform = bundle.eval_transform()

    def fp32_call() -> None:  # what a naive serving script does
        with torch.no_grad():
            bundle.model(transform(photo).unsqueeze(0)).softmax(dim=1)

    baseline = time_calls(fp32_call, args.runs)
    app_stats, base_stats = percentiles(app), percentiles(baseline)
    bf16_peak, fp32_peak = matmul_peak_tflops(torch.bfloat16), matmul_peak_tflops(torch.float32)
    print(
        json.dumps(
            report := {
                "benchmark": "app_latency",
                "model": MODEL.name,
                "runs": args.runs,
                "machine": machine(),
                "app_predict": app_stats,
                "fp32_per_image": base_stats,
                "p50_ratio": round(app_stats["p50_ms"] / base_stats["p50_ms"], 3),
                "target_p50_ratio": round(1 / 3, 3),
                "bf16_matmul_peak_tflops": round(bf16_peak, 3),
                "fp32_matmul_peak_tflops": round(fp32_peak, 3),
                # The best ratio bf16 GEMMs can give on this CPU, if all time were GEMMs at their peaks:
                "p50_ratio_floor_from_gemm_peaks": round(fp32_peak / bf16_peak, 3),
            },
            indent=2,
        )
    )
    write_result("app_latency", report)


if __name__ == "__main__":
    main()
