"""The training benchmark runs end to end at a toy size, and with `--device cuda` on a machine without a GPU
it says so and exits 0 (figures are the benchmark's job, not a test's: nothing here is timed)."""

from __future__ import annotations

import json
import subprocess
import sys

import torch

from tests.helpers import ROOT


def run_benchmark(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.train_throughput", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )


def test_train_throughput_reports_mfu_for_the_stage_and_the_baseline():
    done = run_benchmark("--batch-size", "2", "--steps", "1", "--warmup", "1", "--no-compile")
    report = json.loads(done.stdout)
    assert report["device"] == "cpu" and report["batch_size"] == 2 and report["compiled_stage_images_per_s"] is None
    assert report["stage_images_per_s"] > 0 and report["fp32_loop_images_per_s"] > 0
    assert 0 < report["mfu"] == report["stage_mfu"] and report["target_mfu"] == 0.8
    # Model FLOPs of ViT-B/16 training with 2 frozen blocks, attention included (~93 GFLOP per image).
    assert 85 < report["train_gflops_per_image"] < 100
    assert report["bf16_matmul_peak_tflops"] == max(report["bf16_matmul_peaks_seen_tflops"])


def test_train_throughput_on_cuda_says_when_there_is_no_gpu():
    if torch.cuda.is_available():  # a GPU machine measures instead: the report is for the GPU
        report = json.loads(run_benchmark("--device", "cuda", "--steps", "1", "--warmup", "1", "--no-compile").stdout)
        assert report["device"] == "cuda" and report["target_mfu"] == 0.5 and "gpu" in report["machine"]
        return
    done = run_benchmark("--device", "cuda")
    assert json.loads(done.stdout) == {
        "benchmark": "train_throughput",
        "device": "cuda",
        "skipped": "no GPU on this machine",
    }
    assert "no GPU" in done.stderr
