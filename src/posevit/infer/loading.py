"""The one place a command turns its settings into a model: where it comes from, and the predictor on its
backend (`posevit serve` and `posevit predict` both call `open_model`; a server following an alias fetches each
new version with `fetch_version` and loads it with `load_served`, on the same backend and device)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from posevit.core.config import InferenceSettings
from posevit.core.errors import ConfigError
from posevit.infer.backends import check_device, load_predictor
from posevit.infer.model_source import ServedModel, from_registry, resolve
from posevit.infer.predictor import Predictor

if TYPE_CHECKING:
    from posevit.publish.registry import ModelAddress

TORCH_MISSING = (
    "backend torch needs PyTorch, which this install lacks (the serving install runs the exports): "
    "use backend onnx, onnx-int8, openvino or openvino-int8 (--backend, POSEVIT_BACKEND), or install the full stack"
)


def open_model(settings: InferenceSettings, device_setting: str = "--device") -> tuple[ServedModel, Predictor]:
    """Check the device, find the model, load it on the backend; a PosevitError says what is wrong."""
    with _torch_needed():
        check_device(settings.device, settings.backend, device_setting)
        served = resolve(settings.model, settings.backend)
    return served, load_served(served, settings)


def load_served(served: ServedModel, settings: InferenceSettings) -> Predictor:
    """A model already on disk, on the settings' backend, device and precision."""
    with _torch_needed():
        return load_predictor(served, settings.device, settings.backend, settings.precision)


@contextmanager
def _torch_needed() -> Iterator[None]:
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name in {"torch", "timm", "safetensors", "torchvision"}:
            raise ConfigError(TORCH_MISSING) from None
        raise


def fetch_version(
    address: ModelAddress,
    version: str,
    settings: InferenceSettings,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> ServedModel:
    """One published version with the files the settings' backend runs, each verified against its manifest."""
    return from_registry(address, version, settings.backend, endpoint_url, region)
