"""Evaluation throughput: the evaluate stage's batched bf16 path against a per-image fp32 loop
of the same model (ViT-B/16, 224 px) on the same images, in the same run.

    python -m benchmarks.eval_throughput [--images 64] [--batch-size 32]

Prints JSON; target: speed-up >= 4.
"""

from __future__ import annotations

import argparse
import json
import time

import datasets
import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import VIT_B16, machine, matmul_peak_tflops, random_bundle, write_result
from posevit.core.labels import ACTION_CLASSES
from posevit.evaluate.predict import predict

MODEL = VIT_B16


def photo_like_split(count: int) -> datasets.Dataset:
    """Smooth random images of photo size (decoding and resizing are part of the work)."""
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).resize((640, 480), Image.Resampling.BICUBIC)
        for _ in range(count)
    ]
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "labels": datasets.ClassLabel(names=list(ACTION_CLASSES)),
            "id": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(
        {"image": images, "labels": [i % 15 for i in range(count)], "id": [str(i) for i in range(count)]},
        features=features,
    )


def per_image_fp32(bundle, split: datasets.Dataset) -> float:
    """The baseline: one image at a time, fp32, as a naive inference script would."""
    transform = bundle.eval_transform()
    start = time.perf_counter()
    with torch.inference_mode():
        for row in split:
            bundle.model(transform(row["image"]).unsqueeze(0)).softmax(dim=1)
    return len(split) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    split = photo_like_split(args.images)
    bundle = random_bundle(MODEL)
    predict(bundle, split.select(range(args.batch_size)), args.batch_size)  # warm-up
    start = time.perf_counter()
    predict(bundle, split, args.batch_size)
    batched = len(split) / (time.perf_counter() - start)
    baseline = per_image_fp32(load_bundle_fp32(bundle), split)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        bundle.model(torch.randn(1, 3, 224, 224))
    flops = counter.get_total_flops()
    peak = matmul_peak_tflops(torch.bfloat16)
    print(
        json.dumps(
            report := {
                "benchmark": "eval_throughput",
                "model": MODEL.name,
                "images": len(split),
                "batch_size": args.batch_size,
                "machine": machine(),
                "evaluate_images_per_s": round(batched, 2),
                "per_image_fp32_images_per_s": round(baseline, 2),
                "speedup": round(batched / baseline, 2),
                "target_speedup": 4.0,
                "gflops_per_image": round(flops / 1e9, 1),
                "bf16_matmul_peak_tflops": round(peak, 3),
                "evaluate_mfu": round(batched * flops / 1e12 / peak, 3),
                "fp32_matmul_peak_tflops": round(matmul_peak_tflops(torch.float32), 3),
                "per_image_fp32_tflops": round(baseline * flops / 1e12, 3),
                # Even at 100% of the bf16 peak, batched bf16 cannot beat the fp32 loop by more than this:
                "speedup_ceiling_at_bf16_peak": round(peak / (baseline * flops / 1e12), 2),
            },
            indent=2,
        )
    )
    write_result("eval_throughput", report)


def load_bundle_fp32(bundle):
    """The same weights, in the default contiguous layout (predict switched it to channels_last)."""
    bundle.model = bundle.model.to(memory_format=torch.contiguous_format)
    return bundle


if __name__ == "__main__":
    main()
