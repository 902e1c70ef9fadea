"""The model's own preprocessing: timm's resolved data config, and the eval transform built from it.

The data config (input size, mean, std, interpolation, crop_pct) travels in the model
bundle as JSON, so evaluation and the app rebuild the exact eval transform without pickles.
"""

from __future__ import annotations

from typing import Any

from timm.data import create_transform, resolve_model_data_config
from torch import nn

from posevit.models.bundle_config import DataConfig


def model_data_config(model: nn.Module) -> DataConfig:
    """timm's resolved data config as plain JSON-able values."""
    resolved = resolve_model_data_config(model)
    return DataConfig(
        input_size=list(resolved["input_size"]),
        interpolation=resolved["interpolation"],
        mean=list(resolved["mean"]),
        std=list(resolved["std"]),
        crop_pct=float(resolved["crop_pct"]),
        crop_mode=resolved["crop_mode"],
    )


def timm_transform_args(data_config: DataConfig) -> dict[str, Any]:
    """The data config as keyword arguments of `timm.data.create_transform` (tuples where timm wants them)."""
    return {key: tuple(value) if isinstance(value, list) else value for key, value in data_config.items()}


def eval_transform(data_config: DataConfig):
    """Resize + center crop + normalise: deterministic, the same in evaluate and the app."""
    return create_transform(**timm_transform_args(data_config), is_training=False)
