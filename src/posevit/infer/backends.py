"""The inference backends: what each one runs, which devices it has, and how a served model loads on it.

    torch          models/config.json + models/model.safetensors in PyTorch (bf16 where native; heat maps)
    onnx           models/config.json + exports/model.onnx in ONNX Runtime (fp32)
    onnx-int8      models/config.json + exports/model.int8.onnx in ONNX Runtime (dynamic int8)
    openvino       models/config.json + exports/openvino/model.{xml,bin} in OpenVINO (fp32)
    openvino-int8  models/config.json + exports/openvino/model.int8.{xml,bin} in OpenVINO (NNCF's static int8)

`BACKEND_FILES` is the one declaration of what a backend needs from a model version: the model
sources (`infer.model_source`) fetch exactly those files from the registry or a DVC revision.
PyTorch is imported only when backend torch is asked for: the serving install has none.
"""

from __future__ import annotations

from pathlib import Path

from posevit.core.config import Backend, Precision
from posevit.core.errors import ConfigError
from posevit.core.paths import EXPORTS_DIR, IR_BY_BACKEND, MODELS_DIR, ONNX_BY_BACKEND
from posevit.infer.predictor import OnnxPredictor, OpenVinoPredictor, Predictor
from posevit.infer.served import ServedModel
from posevit.models.bundle_config import CONFIG_FILE, WEIGHTS_FILE, read_bundle_config
from posevit.models.onnx_runtime import check_onnx_device
from posevit.models.openvino_runtime import openvino_device


def _ir(backend: Backend) -> tuple[Path, Path]:
    """An OpenVINO IR is two files: its graph (.xml) and its weights (.bin)."""
    graph = IR_BY_BACKEND[backend]
    return graph, graph.with_suffix(".bin")


BACKEND_FILES: dict[Backend, tuple[Path, ...]] = {  # paths inside a project or a registry version
    "torch": (MODELS_DIR / CONFIG_FILE, MODELS_DIR / WEIGHTS_FILE),
    "onnx": (MODELS_DIR / CONFIG_FILE, ONNX_BY_BACKEND["onnx"]),
    "onnx-int8": (MODELS_DIR / CONFIG_FILE, ONNX_BY_BACKEND["onnx-int8"]),
    "openvino": (MODELS_DIR / CONFIG_FILE, *_ir("openvino")),
    "openvino-int8": (MODELS_DIR / CONFIG_FILE, *_ir("openvino-int8")),
}


def check_device(device: str, backend: Backend, setting: str = "--device") -> None:
    """Stop before loading anything when `device` names hardware this machine, or this backend, lacks."""
    if backend in IR_BY_BACKEND:
        openvino_device(device, setting)
    elif device.startswith("gpu"):
        raise ConfigError(
            f"{setting}={device} (an Intel GPU) is for the OpenVINO backends (openvino, openvino-int8); backend "
            f"{backend} runs on cpu or cuda[:N]"
        )
    elif backend == "torch":
        from posevit.core.precision import check_inference_device  # imports torch

        check_inference_device(device, setting)
    else:
        check_onnx_device(device, setting)


def load_predictor(
    served: ServedModel, device: str = "cpu", backend: Backend = "torch", precision: Precision = "auto"
) -> Predictor:
    """The served model on `backend`: torch loads the weights (in `precision`); the ONNX ones read config.json
    and an export, and compute in what that file holds; the OpenVINO ones read config.json and an IR, and set
    the precision of what runs in floating point (`precision`; auto: see `OpenVinoPredictor`)."""
    if backend == "torch":
        from posevit.infer.torch_predictor import TorchPredictor  # imports torch
        from posevit.models.bundle import load_bundle

        return TorchPredictor(load_bundle(served.bundle_dir), device, precision)
    if backend in ONNX_BY_BACKEND and precision != "auto":
        raise ConfigError(
            f"precision {precision} is for backend torch (and openvino, openvino-int8); backend {backend} computes "
            "in what its ONNX file holds (onnx: fp32, onnx-int8: int8): leave precision at auto, or use another backend"
        )
    export_file = BACKEND_FILES[backend][1].relative_to(EXPORTS_DIR)
    if served.exports_dir is None or not (served.exports_dir / export_file).is_file():
        raise ConfigError(
            f"backend {backend} needs the model's export ({export_file} in an exports/ folder beside models/), "
            "and this model came without one: run `dvc repro export` (a registry version has them when its push "
            "published them), or use backend torch"
        )
    config = read_bundle_config(served.bundle_dir)
    if backend in IR_BY_BACKEND:
        return OpenVinoPredictor(config, served.exports_dir, backend, device, precision)
    return OnnxPredictor(config, served.exports_dir, backend, device)
