"""The export stage's work: ONNX fp32 (+ int8), an input spec, and parity on the test split with a bar."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

from posevit.core import paths as default_paths
from posevit.core.config import ExportConfig
from posevit.core.errors import PosevitError
from posevit.data.store import load_split
from posevit.export.onnx import FP32_FILE, INT8_FILE, SPEC_FILE, export_onnx, quantize_int8, write_input_spec
from posevit.export.parity import FormatParity, parity, test_split_logits
from posevit.models.bundle import load_bundle
from posevit.models.onnx_runtime import OnnxModel

log = logging.getLogger("posevit.export")


class ExportError(PosevitError):
    """An exported model does not agree with PyTorch well enough to ship."""


@dataclass(frozen=True)
class ExportPaths:
    models: Path = default_paths.MODELS_DIR
    data: Path = default_paths.PROCESSED_DIR
    exports: Path = default_paths.EXPORTS_DIR


class ExportMetrics(TypedDict):
    """`metrics/export.json`."""

    opset: int
    n_test: int
    pytorch_accuracy: float  # fp32, the reference of every comparison
    onnx: FormatParity
    onnx_int8: NotRequired[FormatParity]
    int8_accuracy_drop: NotRequired[float]


def export(cfg: ExportConfig, paths: ExportPaths = ExportPaths()) -> ExportMetrics:
    bundle = load_bundle(paths.models)
    staging = paths.exports.with_name(paths.exports.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    fp32 = export_onnx(bundle, staging / FP32_FILE, cfg.opset)
    runners = {"onnx": OnnxModel(fp32).logits}
    if cfg.int8:
        runners["onnx_int8"] = OnnxModel(quantize_int8(fp32, staging / INT8_FILE)).logits
    write_input_spec(bundle, staging / SPEC_FILE)

    labels, logits = test_split_logits(bundle, load_split("test", paths.data), cfg.batch_size, runners)
    reference = logits["pytorch"]
    metrics = ExportMetrics(
        opset=cfg.opset,
        n_test=len(labels),
        pytorch_accuracy=round(float((reference.argmax(1) == labels).mean()), 6),
        onnx=parity(labels, reference, logits["onnx"]),
    )
    if cfg.int8:
        metrics["onnx_int8"] = parity(labels, reference, logits["onnx_int8"])
        metrics["int8_accuracy_drop"] = round(metrics["pytorch_accuracy"] - metrics["onnx_int8"]["accuracy"], 6)
    problems = parity_problems(metrics, cfg)
    if problems:
        raise ExportError("the export is not published: " + "; ".join(problems))
    shutil.rmtree(paths.exports, ignore_errors=True)
    staging.rename(paths.exports)
    return metrics


def parity_problems(metrics: ExportMetrics, cfg: ExportConfig) -> list[str]:
    """Why these exports must not ship (empty when they may)."""
    problems = []
    if metrics["onnx"]["top1_agreement"] < cfg.min_top1_agreement:
        problems.append(
            f"ONNX fp32 agrees with PyTorch on top-1 for {metrics['onnx']['top1_agreement']:.2%} of the "
            f"test images, below export.min_top1_agreement={cfg.min_top1_agreement}"
        )
    if cfg.int8 and metrics["int8_accuracy_drop"] > cfg.max_int8_accuracy_drop:
        problems.append(
            f"int8 loses {metrics['int8_accuracy_drop']:.4f} accuracy, more than "
            f"export.max_int8_accuracy_drop={cfg.max_int8_accuracy_drop} (set export.int8=false to ship "
            "fp32 only, or raise the allowance)"
        )
    return problems
