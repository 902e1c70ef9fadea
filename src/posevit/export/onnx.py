"""A bundle's model as ONNX with a dynamic batch axis, and its dynamically quantized int8 twin.

The export uses torch.onnx's dynamo exporter (`torch.export` + onnxscript); quantization is ONNX
Runtime's `quantize_dynamic` (int8 weights, activations quantized per batch at run time: no
calibration data, and on CPUs with VNNI/AMX the int8 GEMMs are the fast path).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from posevit.core.paths import ONNX_FP32, ONNX_INT8, ONNX_SPEC
from posevit.models.bundle import Bundle

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "pixels", "logits"
FP32_FILE, INT8_FILE, SPEC_FILE = ONNX_FP32.name, ONNX_INT8.name, ONNX_SPEC.name


def export_onnx(bundle: Bundle, path: Path, opset: int, model: torch.nn.Module | None = None) -> Path:
    """Write `bundle.model` (fp32, eval), or `model` computing the same, as ONNX: input `pixels` (N, 3, H, W),
    output `logits` (N, classes)."""
    _, height, width = bundle.data_config["input_size"]
    model = (model or bundle.model).float().eval()
    example = torch.randn(2, 3, height, width)
    batch = torch.export.Dim("batch", min=1, max=4096)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        verbose=False,
    )
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    drop_build_details(program)
    program.save(str(path))
    return path


def drop_build_details(program: torch.onnx.ONNXProgram) -> None:
    """Remove what the exporter records about where it ran, so one bundle exports to the same bytes anywhere.

    Each node carries debug metadata whose stack traces name the absolute paths of this checkout and its
    virtual environment, and the producer version carries the torch wheel's local tag (`+cpu`, `+cu130`):
    neither changes what the model computes, but both would change the export's hash from machine to machine.
    """
    model = program.model
    model.producer_version = torch.__version__.split("+")[0]
    model.metadata_props.clear()
    model.graph.metadata_props.clear()
    for node in model.graph.all_nodes():
        node.metadata_props.clear()


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantization of the MatMul/Gemm weights (ONNX Runtime's own tool)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


def write_input_spec(bundle: Bundle, path: Path) -> Path:
    """What a caller without posevit needs to feed the ONNX file: size, mean, std, crop, labels."""
    spec = {
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "layout": "NCHW float32, RGB scaled to [0, 1], then (x - mean) / std",
        "data_config": bundle.data_config,
        "labels": bundle.labels,
        "temperature": bundle.temperature,  # probabilities = softmax(logits / temperature)
        "model_name": bundle.config.model_name,
    }
    path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return path
