"""The training benchmark runs end to end at a toy size, and with `--device cuda` on a machine without a GPU
it says so and exits 0 (figures are the benchmark's job, not a test's: nothing here is timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
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


def waiting(seconds_per_image: float):
    """A made-up backend that only waits, `seconds_per_image` for each image of a call (calls overlap: a sleep)."""

    def logits(pixels: np.ndarray) -> np.ndarray:
        time.sleep(seconds_per_image * len(pixels))
        return np.zeros((len(pixels), 15), np.float32)

    return logits


def test_a_missed_backend_target_carries_the_ceiling_of_the_int8_peak():
    """The backends benchmark's targets say how far the machine allows: the figure every image at the int8 GEMM
    peak would give, from the same run's baseline timings (here made-up backends that only wait)."""
    from benchmarks.backends import OPENVINO_INT8, large_model_targets, speed

    delays = {"torch_fp32": 0.02, "torch_bf16": 0.01, "onnx_fp32": 0.02, "onnx_int8": 0.008}
    backends = {name: waiting(seconds) for name, seconds in (delays | dict.fromkeys(OPENVINO_INT8, 0.006)).items()}
    peaks = {"bf16": 1.0, "fp32": 0.5, "int8": 2.0}  # TFLOP/s, TOPS
    flops = dict.fromkeys(backends, 4e9)  # at 2 TOPS: 2 ms an image
    figures = speed(backends, 8, repeats=3, batch_size=2, flops=flops, peaks=peaks)
    targets = large_model_targets(figures, 2)
    p50, throughput = targets["openvino_int8_p50_vs_torch_bf16"], targets["openvino_int8_best_throughput_vs_onnx_int8"]
    assert p50["met"] is False and throughput["met"] is False  # 0.6x and 1.33x: both short
    bf16_s = figures["torch_bf16"]["batch1_p50_ms"] / 1000
    assert p50["ceiling_at_int8_peak"] == pytest.approx(0.002 / bf16_s, rel=0.02)
    onnx_best = max(1000 / figures["onnx_int8"]["batch1_p50_ms"], figures["onnx_int8"]["batch2_images_per_s"])
    assert throughput["ceiling_at_int8_peak"] == pytest.approx(500 / onnx_best, rel=0.02)
    assert "ceiling_at_int8_peak" not in targets["onnx_int8_p50_vs_torch_bf16"]


def test_the_streams_the_server_runs_count_toward_the_best_throughput():
    """OpenVINO int8 compiled with streams, as `posevit serve` runs it under load, computes one image per stream at
    once: its images/s are timed in the same turns and count toward the best throughput and the share of peak."""
    from benchmarks.backends import OPENVINO_INT8, speed

    delays = {"torch_fp32": 0.02, "torch_bf16": 0.01, "onnx_fp32": 0.02, "onnx_int8": 0.008}
    backends = {name: waiting(seconds) for name, seconds in (delays | dict.fromkeys(OPENVINO_INT8, 0.006)).items()}
    streamed = {"openvino_int8": (waiting(0.006), 2)}  # two calls at once: twice batch 1's rate
    peaks = {"bf16": 1.0, "fp32": 0.5, "int8": 2.0}
    flops = dict.fromkeys(backends, 4e9)
    figures = speed(backends, 8, repeats=3, batch_size=2, flops=flops, peaks=peaks, streamed=streamed)
    row, plain = figures["openvino_int8"], figures["openvino_int8_bf16"]
    rate = row["streams2_images_per_s"]
    assert rate > 1.5 * 1000 / row["batch1_p50_ms"] and "streams2_images_per_s" not in plain
    assert row["streams2_share_of_peak"] == pytest.approx(4e9 * rate / 1e12 / 2.0, rel=0.01)
    onnx_best = max(1000 / figures["onnx_int8"]["batch1_p50_ms"], figures["onnx_int8"]["batch2_images_per_s"])
    ratios = figures["ratios"]
    assert ratios["openvino_int8_best_throughput_vs_onnx_int8"] == pytest.approx(rate / onnx_best, rel=0.02)
    assert (
        ratios["openvino_int8_best_throughput_vs_onnx_int8"] > ratios["openvino_int8_bf16_best_throughput_vs_onnx_int8"]
    )


def test_a_peak_measured_higher_after_the_run_restates_every_figure_taken_against_it():
    """The peaks are measured before and after the backends, and the higher counts: each share of peak, the
    ceilings at the int8 peak and the batch-1 profile are restated against it (a slow first measurement, from
    a neighbour's load, once put the linear layers at 159% of the int8 peak)."""
    from benchmarks.backends import rescale_shares
    from benchmarks.openvino_profile import LINEAR, REST, summary

    profiled = summary(Counter({LINEAR: 0.040, REST: 0.010}), macs=10**10, int8_peak_tops=0.4)  # 50 ms at 0.4
    figures = {
        "openvino_int8": {"precision_peak": "int8", "batch1_share_of_peak": 0.9},
        "torch_bf16": {"precision_peak": "bf16", "batch1_share_of_peak": 0.5},
        "ratios": {"int8_peak_p50_vs_torch_bf16": 0.5, "int8_peak_throughput_vs_onnx_int8": 1.2},
        "openvino_int8_batch1_profile": profiled,
    }
    assert profiled["linear_share_of_int8_peak"] == 1.25
    rescale_shares(figures, {"int8": 0.4, "bf16": 1.0}, {"int8": 0.8, "bf16": 1.0})
    assert figures["openvino_int8"]["batch1_share_of_peak"] == 0.45
    assert figures["torch_bf16"]["batch1_share_of_peak"] == 0.5
    assert figures["ratios"] == {"int8_peak_p50_vs_torch_bf16": 0.25, "int8_peak_throughput_vs_onnx_int8": 2.4}
    restated = figures["openvino_int8_batch1_profile"]
    assert restated["int8_peak_tops"] == 0.8 and restated["linear_share_of_int8_peak"] == 0.625
    assert restated["ceiling_ms"] == 35.0  # the rest's 10 ms + 20 G ops at 0.8 TOPS


def test_serve_load_says_what_the_serving_costs_beyond_the_backends_own_timings():
    """From the warm-up's timings on the model card: the c=8 rate as a share of the best images/s the backend
    reached alone, and the c=1 p50 beyond a batch-1 pass (the figures of a stored run, 2026-12-02)."""
    from benchmarks.serve_load import against_the_backend_alone

    batching = {
        "timings": [
            {"batch_size": 1, "ms_per_batch": 66.0, "ms_per_image": 66.0},
            {"batch_size": 2, "ms_per_batch": 114.4, "ms_per_image": 57.2},
        ],
        "stream_timings": [
            {"streams": 1, "batch_size": 4, "ms_per_image": 62.3},
            {"streams": 2, "batch_size": 2, "ms_per_image": 57.2},
        ],
    }
    ours = {1: {"p50_ms": 96.9, "requests_per_s": 10.01}, 8: {"p50_ms": 570.2, "requests_per_s": 13.51}}
    figures = against_the_backend_alone(ours, batching)
    assert figures == {
        "backend_alone_best_images_per_s": 17.48,
        "c8_share_of_backend_alone": 0.773,
        "c1_p50_beyond_a_batch_1_pass_ms": 30.9,
    }
    assert against_the_backend_alone({32: ours[8]}, batching) == {}  # no level to compare: nothing said
    assert against_the_backend_alone(ours, {}) == {}  # a card without timings (torch with a set batch limit)


def test_serve_load_reads_a_levels_passes_and_requests_from_the_servers_own_totals():
    from benchmarks.serve_load import inside_the_server

    before = {"forward_s": 10.0, "passes": 100, "request_s": 12.0, "requests": 150, "images": 150}
    after = {"forward_s": 16.0, "passes": 120, "request_s": 24.0, "requests": 190, "images": 190}
    assert inside_the_server(before, after) == {
        "forward_pass_mean_ms": 300.0,
        "images_per_pass": 2.0,
        "in_server_mean_ms": 300.0,
    }
    assert inside_the_server(before, before) == {}  # nothing answered in the level: nothing said
