"""The ONNX export as OpenVINO IR (fp32), and its static int8 twin from NNCF post-training quantization.

Static int8 fixes every activation's scale from calibration images (a part of the train split, through the
eval transform), so an image's answer does not depend on what else is in its batch, which ONNX Runtime's
dynamic int8 cannot promise. `model_type=TRANSFORMER` keeps LayerNorm, Softmax and GELU in floating point
(they run in what the runtime's precision hint says: bf16 on CPUs with native bf16, else f32); SmoothQuant
moves the activations' outliers into the weights first (NNCF's ViT-B/16 reference: alpha 0.15, -0.12 points
of ImageNet accuracy).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from posevit.core.paths import EXPORTS_DIR, OPENVINO_FP32, OPENVINO_INT8
from posevit.export.onnx import export_onnx
from posevit.export.token_split import token_split_model
from posevit.models.bundle import Bundle

FP32_IR, INT8_IR = OPENVINO_FP32.relative_to(EXPORTS_DIR), OPENVINO_INT8.relative_to(EXPORTS_DIR)  # in exports/


def ir_files(xml: Path) -> tuple[Path, Path]:
    """An IR is two files: the graph (.xml) and the weights (.bin) beside it."""
    return xml, xml.with_suffix(".bin")


def convert_to_ir(onnx_file: Path, xml: Path) -> Path:
    """The ONNX file as OpenVINO IR, weights kept in fp32 (no fp16 compression: the fp32 backend is exact)."""
    import openvino as ov

    model = ov.convert_model(onnx_file)
    _stable_names(model)
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, xml, compress_to_fp16=False)
    return xml


def write_fp32_ir(bundle: Bundle, onnx_file: Path, xml: Path, opset: int, token_split: bool) -> tuple[int, ...] | str:
    """The bundle's fp32 IR: with `token_split`, converted from an ONNX export of its token-split twin (a temporary
    file: the ONNX files people run stay the plain model), else from `onnx_file`. Returns the token groups its
    per-token layers run in, or why they run in one (see `token_split`)."""
    split = (
        token_split_model(bundle.model, tuple(bundle.data_config["input_size"]))
        if token_split
        else "export.openvino_token_split is off"
    )
    if isinstance(split, str):
        convert_to_ir(onnx_file, xml)
        return split
    with tempfile.TemporaryDirectory(prefix="posevit-ir-") as scratch:
        convert_to_ir(export_onnx(bundle, Path(scratch) / onnx_file.name, opset, split), xml)
    return split.groups


def quantize_static_int8(
    fp32_xml: Path,
    xml: Path,
    batches: Iterable[Any],
    to_pixels: Callable[[Any], np.ndarray],
    subset_size: int,
    smooth_quant_alpha: float,
) -> Path:
    """NNCF's post-training quantization of the fp32 IR: int8 weights and activations, each activation's scale
    fixed from `subset_size` calibration images (`batches`, a re-iterable: NNCF reads it once per algorithm;
    `to_pixels` makes a batch the model's input)."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(fp32_xml)
    quantized = nncf.quantize(
        model,
        nncf.Dataset(batches, to_pixels),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=subset_size,
        advanced_parameters=nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=smooth_quant_alpha)
        ),
    )
    _stable_names(quantized)
    ov.save_model(quantized, xml, compress_to_fp16=False)
    return xml


# OpenVINO names the nodes it creates (constant folding, NNCF's quantizers) after a counter of the process:
# `Constant_3780` in one export is `Constant_33346` in the next. Renumbered in graph order, two exports of one
# bundle are the same bytes, in one process or two. Names from the ONNX file (node_*, val_*, weights) stay.
_COUNTER_NAME = re.compile(r"\b([A-Z][A-Za-z0-9]*)_(\d+)\b")


def _stable_names(model: Any) -> None:
    """Renumber the node names OpenVINO made up, in graph order (they name nothing the model computes)."""
    renamed: dict[str, str] = {}

    def stable(match: re.Match[str]) -> str:
        return renamed.setdefault(match.group(0), f"{match.group(1)}_{len(renamed)}")

    for op in model.get_ordered_ops():
        op.set_friendly_name(_COUNTER_NAME.sub(stable, op.get_friendly_name()))
