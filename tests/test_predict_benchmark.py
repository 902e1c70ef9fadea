"""The predict throughput benchmark runs end to end at a toy size and reports every pipeline on both folders
(figures are the benchmark's job, not a test's: nothing here is timed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.helpers import ROOT


def test_predict_throughput_compares_the_dataloader_with_both_pools_on_both_folders(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.predict_throughput", "--images", "6", "--rounds", "1", "--batch-size", "4"],
        cwd=ROOT,
        env={**os.environ, "POSEVIT_BENCHMARK_RESULTS": str(tmp_path)},  # the committed results stay as measured
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    report = json.loads(done.stdout)
    folders = {"demo_96px_png", "photo_640x480_jpeg"}
    assert set(report["images_per_s"]) == folders and report["transform"].endswith("(vit_base_patch16_224, 224 px)")
    for rates in report["images_per_s"].values():
        assert set(rates) == {"dataloader", "threads", "processes"} and min(rates.values()) > 0
    assert set(report["threads_vs_dataloader"]) == set(report["processes_vs_dataloader"]) == folders
    written = json.loads((tmp_path / "predict_throughput-numpy.json").read_text())
    assert written["result"] == report and written["command"].startswith("python -m benchmarks.predict_throughput")
