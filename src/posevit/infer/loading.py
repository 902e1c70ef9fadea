"""The one place a command turns its settings into a model: where it comes from, and the predictor on its
backend (`posevit serve` and `posevit predict` both call `open_model`)."""

from __future__ import annotations

from posevit.core.config import InferenceSettings
from posevit.core.errors import ConfigError
from posevit.infer.backends import check_device, load_predictor
from posevit.infer.model_source import ServedModel, resolve
from posevit.infer.predictor import Predictor

TORCH_MISSING = (
    "backend torch needs PyTorch, which this install lacks (the serving install runs the ONNX exports): "
    "use backend onnx or onnx-int8 (--backend, POSEVIT_BACKEND), or install the full stack"
)


def open_model(settings: InferenceSettings, device_setting: str = "--device") -> tuple[ServedModel, Predictor]:
    """Check the device, find the model, load it on the backend; a PosevitError says what is wrong."""
    try:
        check_device(settings.device, settings.backend, device_setting)
        served = resolve(settings.model, settings.backend)
        return served, load_predictor(served, settings.device, settings.backend, settings.precision)
    except ModuleNotFoundError as exc:
        if exc.name in {"torch", "timm", "safetensors", "torchvision"}:
            raise ConfigError(TORCH_MISSING) from None
        raise
