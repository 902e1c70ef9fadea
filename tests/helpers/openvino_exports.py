"""OpenVINO IR exports of a real bundle, made as the export stage makes them, without its datasets and parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from posevit.core.config import ExportConfig
from posevit.export.onnx import FP32_FILE, export_onnx
from posevit.export.openvino_ir import FP32_IR, INT8_IR, quantize_static_int8, write_fp32_ir
from posevit.models.bundle import load_bundle


def photos(count: int, seed: int = 0) -> list[Image.Image]:
    """Noisy photos of different sizes and colours: a decisive random model tells many of them apart."""
    rng = np.random.default_rng(seed)
    made = []
    for i in range(count):
        height, width = 64 + 5 * i, 80 + 7 * i
        tint = rng.integers(0, 256, 3)
        noise = rng.normal(0, 40, (height, width, 3))
        made.append(Image.fromarray(np.clip(tint + noise, 0, 255).astype(np.uint8)))
    return made


def write_openvino_exports(models: Path, exports: Path, calibration_images: int = 16) -> Path:
    """exports/model.onnx, openvino/model.xml (fp32) and openvino/model.int8.xml (NNCF), calibrated on noise
    photos through the bundle's eval transform."""
    bundle, cfg = load_bundle(models), ExportConfig()
    fp32 = exports / FP32_FILE
    if not fp32.is_file():
        export_onnx(bundle, fp32, cfg.opset)
    write_fp32_ir(bundle, fp32, ir := exports / FP32_IR, cfg.opset, cfg.openvino_token_split)
    transform = bundle.eval_transform()
    batches = [transform(photo).numpy()[None] for photo in photos(calibration_images, seed=7)]
    quantize_static_int8(ir, exports / INT8_IR, batches, np.asarray, calibration_images, cfg.smooth_quant_alpha)
    return exports
