"""The training benchmark runs end to end at a toy size, and with `--device cuda` on a machine without a GPU
it says so and exits 0 (figures are the benchmark's job, not a test's: nothing here is timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import ROOT


def run_benchmark(results: Path, *args: str) -> subprocess.CompletedProcess:
    """Run it with its result written under `results` (a toy-sized run must not replace benchmarks/results/)."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.train_throughput", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
        env={**os.environ, "POSEVIT_BENCHMARK_RESULTS": str(results)},
    )


def test_train_throughput_reports_mfu_for_the_stage_and_the_baseline(tmp_path):
    done = run_benchmark(tmp_path, "--batch-size", "2", "--steps", "1", "--warmup", "1", "--no-compile")
    report = json.loads(done.stdout)
    assert report["device"] == "cpu" and report["batch_size"] == 2 and report["compiled_stage_images_per_s"] is None
    assert report["stage_images_per_s"] > 0 and report["fp32_loop_images_per_s"] > 0
    assert 0 < report["mfu"] == report["stage_mfu"] and report["target_mfu"] == 0.8
    # Model FLOPs of ViT-B/16 training with 2 frozen blocks, attention included (~93 GFLOP per image).
    assert 85 < report["train_gflops_per_image"] < 100
    assert report["bf16_matmul_peak_tflops"] == max(report["bf16_matmul_peaks_seen_tflops"])
    # The same figures land in its result file, with what the docs need to say where they come from.
    record = json.loads((tmp_path / "train_throughput-cpu.json").read_text())
    assert record["result"] == report and record["name"] == "train_throughput-cpu"
    assert record["command"] == "python -m benchmarks.train_throughput --batch-size 2 --steps 1 --warmup 1 --no-compile"
    assert record["date"].endswith("Z") and record["commit"] and record["machine"]["cores"] >= 1


def test_train_throughput_on_cuda_says_when_there_is_no_gpu(tmp_path):
    if torch.cuda.is_available():  # a GPU machine measures instead: the report is for the GPU
        report = json.loads(
            run_benchmark(tmp_path, "--device", "cuda", "--steps", "1", "--warmup", "1", "--no-compile").stdout
        )
        assert report["device"] == "cuda" and report["target_mfu"] == 0.5 and "gpu" in report["machine"]
        return
    done = run_benchmark(tmp_path, "--device", "cuda")
    assert json.loads(done.stdout) == {
        "benchmark": "train_throughput",
        "device": "cuda",
        "skipped": "no GPU on this machine",
    }
    assert "no GPU" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing measured, so no result replaces the last real one


def test_a_missed_backend_target_carries_the_ceiling_of_the_int8_peak():
    """The backends benchmark's targets say how far the machine allows: the figure every image at the int8 GEMM
    peak would give, from the same run's baseline timings (here made-up backends that only wait)."""
    import time

    import numpy as np

    from benchmarks.backends import OPENVINO_INT8, large_model_targets, speed

    def waiting(seconds_per_image: float):
        def logits(pixels: np.ndarray) -> np.ndarray:
            time.sleep(seconds_per_image * len(pixels))
            return np.zeros((len(pixels), 15), np.float32)

        return logits

    delays = {"torch_fp32": 0.02, "torch_bf16": 0.01, "onnx_fp32": 0.02, "onnx_int8": 0.008}
    backends = {name: waiting(seconds) for name, seconds in (delays | dict.fromkeys(OPENVINO_INT8, 0.006)).items()}
    peaks = {"bf16": 1.0, "fp32": 0.5, "int8": 2.0}  # TFLOP/s, TOPS
    flops = 4e9  # at 2 TOPS: 2 ms an image
    figures = speed(backends, 8, repeats=3, batch_size=2, flops_per_image=flops, peaks=peaks)
    targets = large_model_targets(figures, 2)
    p50, throughput = targets["openvino_int8_p50_vs_torch_bf16"], targets["openvino_int8_best_throughput_vs_onnx_int8"]
    assert p50["met"] is False and throughput["met"] is False  # 0.6x and 1.33x: both short
    bf16_s = figures["torch_bf16"]["batch1_p50_ms"] / 1000
    assert p50["ceiling_at_int8_peak"] == pytest.approx(0.002 / bf16_s, rel=0.02)
    onnx_best = max(1000 / figures["onnx_int8"]["batch1_p50_ms"], figures["onnx_int8"]["batch2_images_per_s"])
    assert throughput["ceiling_at_int8_peak"] == pytest.approx(500 / onnx_best, rel=0.02)
    assert "ceiling_at_int8_peak" not in targets["onnx_int8_p50_vs_torch_bf16"]
