"""The training benchmark runs end to end at a toy size, and with `--device cuda` on a machine without a GPU
it says so and exits 0 (figures are the benchmark's job, not a test's: nothing here is timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
