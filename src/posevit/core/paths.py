"""Every path the pipeline reads or writes, relative to the project root, named once; and `cache_root()`,
the one place outside any project where fetched models are kept.

`dvc.yaml` declares the same paths as stage outputs; a test checks that the two agree.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_DIR = Path("conf")
PARAMS_FILE = Path("params.yaml")

# preprocess
RAW_DIR = Path("data/raw")  # local copies (hub-format, image folders): a dep of preprocess, so DVC sees edits
PROCESSED_DIR = Path("data/processed")
DATA_METRICS = Path("metrics/data.json")
SAMPLES_PLOT = Path("plots/demo_samples.png")

# train
MODELS_DIR = Path("models")
CHECKPOINTS_DIR = Path("checkpoints/train")  # resume state; outside DVC outs, removed on success
LIVE_DIR = Path("dvclive/train")
TRAIN_METRICS = Path("metrics/train.json")
CURVES_PLOT = Path("plots/training_curves.png")

# evaluate
TEST_METRICS = Path("metrics/test.json")
REPORT = Path("metrics/report.xlsx")
PREDICTIONS_CSV = Path("plots/predictions.csv")
CONFUSION_PLOT = Path("plots/confusion_matrix.png")
PER_CLASS_PLOT = Path("plots/per_class_accuracy.png")
RELIABILITY_PLOT = Path("plots/reliability.png")
ERRORS_DIR = Path("plots/errors")  # the error gallery: overview.png and <true>__as__<predicted>.png

# export
EXPORTS_DIR = Path("exports")
ONNX_FP32 = EXPORTS_DIR / "model.onnx"
ONNX_INT8 = EXPORTS_DIR / "model.int8.onnx"
ONNX_SPEC = EXPORTS_DIR / "input.json"
ONNX_BY_BACKEND = {"onnx": ONNX_FP32, "onnx-int8": ONNX_INT8}  # the file each ONNX serving backend runs
OPENVINO_DIR = EXPORTS_DIR / "openvino"  # OpenVINO IR: each model is its graph (.xml) and weights (.bin)
OPENVINO_FP32 = OPENVINO_DIR / "model.xml"
OPENVINO_INT8 = OPENVINO_DIR / "model.int8.xml"  # NNCF's static int8
IR_BY_BACKEND = {"openvino": OPENVINO_FP32, "openvino-int8": OPENVINO_INT8}  # each OpenVINO backend's graph
EXPORT_METRICS = Path("metrics/export.json")
EXPORT_LOG = Path("metrics/export.log")  # what the exporters, the quantizers and NNCF print

# push
PUSH_RECEIPT = Path("metrics/push.json")

# sweeps
SWEEP_PLOT = Path("plots/sweep.png")
SWEEP_WORKBOOK = Path("reports/sweep.xlsx")


def cache_root() -> Path:
    """Where every fetched thing is kept (registry versions, DVC revisions, the page's examples), outside any
    project: POSEVIT_CACHE, else $XDG_CACHE_HOME/posevit, else ~/.cache/posevit. Read at each call, so a
    process (or a test) that sets the variable later is obeyed."""
    if os.environ.get("POSEVIT_CACHE"):
        return Path(os.environ["POSEVIT_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "posevit"
