"""The export stage's work: ONNX fp32 (+ dynamic int8), OpenVINO IR fp32 (+ NNCF static int8), an input spec,
and parity on the test split with a bar. What the exporters and quantizers print goes to a log file."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import datasets
import numpy as np
from torch.utils.data import DataLoader

from posevit.core import paths as default_paths
from posevit.core.config import ExportConfig
from posevit.core.errors import PosevitError
from posevit.data.store import PIXELS, load_split, with_pixels
from posevit.export.onnx import FP32_FILE, INT8_FILE, SPEC_FILE, export_onnx, quantize_int8, write_input_spec
from posevit.export.openvino_ir import FP32_IR, INT8_IR, quantize_static_int8, write_fp32_ir
from posevit.export.parity import FormatParity, LogitsFn, parity, test_split_logits
from posevit.export.quiet import output_into
from posevit.models.bundle import Bundle, load_bundle
from posevit.models.onnx_runtime import OnnxModel
from posevit.models.openvino_runtime import OpenVinoModel, cpu_has_native_bf16

log = logging.getLogger("posevit.export")

# Every format the stage can write, as metrics/export.json names it, and as people do.
FORMATS = {
    "onnx": "ONNX fp32",
    "onnx_int8": "ONNX Runtime dynamic int8",
    "openvino": "OpenVINO fp32",
    "openvino_int8": "OpenVINO static int8 (the rest f32)",
    "openvino_int8_bf16": "OpenVINO static int8 (the rest bf16)",
}
FP32_FORMATS = ("onnx", "openvino")  # gated by top-1 agreement with PyTorch fp32
INT8_FORMATS = ("onnx_int8", "openvino_int8", "openvino_int8_bf16")  # gated by the accuracy they lose
CALIBRATION_SEED = 0  # which train images calibrate: a fixed shuffle, so two exports calibrate alike


class ExportError(PosevitError):
    """An exported model does not agree with PyTorch well enough to ship."""


@dataclass(frozen=True)
class ExportPaths:
    models: Path = default_paths.MODELS_DIR
    data: Path = default_paths.PROCESSED_DIR
    exports: Path = default_paths.EXPORTS_DIR
    log: Path = default_paths.EXPORT_LOG


class Calibration(TypedDict):
    split: str  # always train: the test split only judges
    images: int
    smooth_quant_alpha: float


class OpenVinoRecord(TypedDict, total=False):
    """How the OpenVINO IRs were made, for `metrics/export.json`."""

    openvino_token_groups: list[int]  # tokens per group of the IR's per-token layers (absent: all at once)
    openvino_int8_calibration: Calibration


class ExportMetrics(OpenVinoRecord):
    """`metrics/export.json`."""

    opset: int
    n_test: int
    pytorch_accuracy: float  # fp32, the reference of every comparison
    onnx: FormatParity
    onnx_int8: NotRequired[FormatParity]
    int8_accuracy_drop: NotRequired[float]  # ONNX Runtime dynamic int8's (as onnx_int8.accuracy_drop)
    openvino: NotRequired[FormatParity]
    openvino_int8: NotRequired[FormatParity]
    openvino_int8_bf16: NotRequired[FormatParity]  # only measured on CPUs with native bf16
    cpu_has_native_bf16: NotRequired[bool]


def export(cfg: ExportConfig, paths: ExportPaths = ExportPaths()) -> ExportMetrics:
    bundle = load_bundle(paths.models)
    staging = paths.exports.with_name(paths.exports.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    paths.log.unlink(missing_ok=True)
    runners, record = write_exports(bundle, cfg, staging, paths)
    write_input_spec(bundle, staging / SPEC_FILE)

    labels, logits = test_split_logits(bundle, load_split("test", paths.data), cfg.batch_size, runners)
    reference = logits["pytorch"]
    metrics = ExportMetrics(
        opset=cfg.opset,
        n_test=len(labels),
        pytorch_accuracy=round(float((reference.argmax(1) == labels).mean()), 6),
        onnx=parity(labels, reference, logits["onnx"]),
    )
    for name in runners:
        metrics[name] = parity(labels, reference, logits[name])  # type: ignore[literal-required]
    if "onnx_int8" in metrics:
        metrics["int8_accuracy_drop"] = round(metrics["pytorch_accuracy"] - metrics["onnx_int8"]["accuracy"], 6)
    metrics.update(record)
    if cfg.openvino:
        metrics["cpu_has_native_bf16"] = cpu_has_native_bf16()
    problems = parity_problems(metrics, cfg)
    if problems:
        raise ExportError("the export is not published: " + "; ".join(problems))
    shutil.rmtree(paths.exports, ignore_errors=True)
    staging.rename(paths.exports)
    return metrics


def write_exports(
    bundle: Bundle, cfg: ExportConfig, staging: Path, paths: ExportPaths
) -> tuple[dict[str, LogitsFn], OpenVinoRecord]:
    """Each format the config asks for, written into `staging`: a runner of each, by format, and how the IRs were
    made (token groups, what calibrated the static int8 scales)."""
    with _step("ONNX fp32 (torch.onnx, dynamo exporter)", paths.log):
        fp32 = export_onnx(bundle, staging / FP32_FILE, cfg.opset)
    runners: dict[str, LogitsFn] = {"onnx": OnnxModel(fp32).logits}
    if cfg.int8:
        with _step("ONNX int8 (ONNX Runtime, dynamic quantization)", paths.log):
            runners["onnx_int8"] = OnnxModel(quantize_int8(fp32, staging / INT8_FILE)).logits
    if not cfg.openvino:
        return runners, OpenVinoRecord()
    with _step("OpenVINO IR fp32 (openvino.convert_model)", paths.log):
        groups = write_fp32_ir(bundle, fp32, ir := staging / FP32_IR, cfg.opset, cfg.openvino_token_split)
    if isinstance(groups, str):
        log.info("OpenVINO IR: per-token layers on all tokens at once (%s)", groups)
        record = OpenVinoRecord()
    else:
        log.info(
            "OpenVINO IR: per-token layers on %s tokens (whole 32-row GEMM blocks, then the rest)",
            " + ".join(map(str, groups)),
        )
        record = OpenVinoRecord(openvino_token_groups=list(groups))
    runners["openvino"] = OpenVinoModel(ir, "f32").logits
    if cfg.int8:
        train = load_split("train", paths.data)
        images = min(cfg.calibration_size, len(train))
        with _step(f"OpenVINO IR static int8 (NNCF, calibrated on {images} train images)", paths.log):
            batches = calibration_batches(bundle, train, images)
            ir8 = quantize_static_int8(ir, staging / INT8_IR, batches, _pixels, images, cfg.smooth_quant_alpha)
        runners["openvino_int8"] = OpenVinoModel(ir8, "f32").logits
        if cpu_has_native_bf16():  # what the serving backend runs here by default: measure it too
            runners["openvino_int8_bf16"] = OpenVinoModel(ir8, "bf16").logits
        record["openvino_int8_calibration"] = Calibration(
            split="train", images=images, smooth_quant_alpha=cfg.smooth_quant_alpha
        )
    return runners, record


def calibration_batches(bundle: Bundle, train: datasets.Dataset, images: int) -> Iterable[Any]:
    """`images` train images (a fixed shuffle: every class, not the split's first rows), one per batch, through
    the eval transform: what the served model will see."""
    # In memory: a shuffle's index cache would land in data/processed/train, a DVC output of preprocess.
    chosen = train.shuffle(seed=CALIBRATION_SEED, keep_in_memory=True).select(range(images), keep_in_memory=True)
    return DataLoader(with_pixels(chosen, bundle.eval_transform()), batch_size=1)


def _pixels(batch: dict[str, Any]) -> np.ndarray:
    return batch[PIXELS].numpy()


@contextmanager
def _step(title: str, log_file: Path) -> Iterator[None]:
    """One line for the user, the library's output into the log file, the time it took."""
    log.info("%s ...", title)
    started = time.perf_counter()
    with output_into(log_file, title):
        yield
    log.info("%s: done in %.1f s", title, time.perf_counter() - started)


def parity_problems(metrics: ExportMetrics, cfg: ExportConfig) -> list[str]:
    """Why these exports must not ship (empty when they may)."""
    problems = []
    rows: dict[str, FormatParity] = {
        name: metrics[name]  # type: ignore[literal-required]
        for name in FORMATS
        if name in metrics
    }
    for name in FP32_FORMATS:
        if name in rows and rows[name]["top1_agreement"] < cfg.min_top1_agreement:
            problems.append(
                f"{FORMATS[name]} agrees with PyTorch on top-1 for {rows[name]['top1_agreement']:.2%} of the "
                f"test images, below export.min_top1_agreement={cfg.min_top1_agreement}"
            )
    for name in INT8_FORMATS:
        drop = round(metrics["pytorch_accuracy"] - rows[name]["accuracy"], 6) if name in rows else 0.0
        if drop > cfg.max_int8_accuracy_drop:
            problems.append(
                f"{FORMATS[name]} loses {drop:.4f} accuracy, more than "
                f"export.max_int8_accuracy_drop={cfg.max_int8_accuracy_drop} (set export.int8=false to ship "
                "fp32 only, or raise the allowance)"
            )
    return problems


def summary(metrics: ExportMetrics) -> list[str]:
    """What the stage tells its user: each format's parity against PyTorch fp32 on the test split."""
    reference = metrics["pytorch_accuracy"]
    lines = [f"parity on {metrics['n_test']} test images against PyTorch fp32 (accuracy {reference:.4f}):"]
    for name, label in FORMATS.items():
        if name in metrics:
            row: FormatParity = metrics[name]  # type: ignore[literal-required]
            drop = reference - row["accuracy"]
            lines.append(
                f"  {label:<38} accuracy {row['accuracy']:.4f} (drop {drop:+.4f}), top-1 agreement "
                f"{row['top1_agreement']:.4f}, max |logit diff| {row['max_abs_logit_diff']:.2e}"
            )
    return lines
