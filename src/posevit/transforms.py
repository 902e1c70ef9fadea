"""Train and eval transforms from timm's resolved data config of the model.

The data config (input size, mean, std, interpolation, crop_pct) travels in the model
bundle as JSON, so evaluation and the app rebuild the exact eval transform without pickles.
"""

from __future__ import annotations

from typing import Any

from timm.data import create_transform, resolve_model_data_config
from torch import nn

from posevit.config import AugmentConfig

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def model_data_config(model: nn.Module) -> dict[str, Any]:
    """timm's resolved data config as plain JSON-able values."""
    resolved = resolve_model_data_config(model)
    return {key: list(value) if isinstance(value, tuple) else value for key, value in resolved.items() if key in DATA_CONFIG_KEYS}


def _timm_args(data_config: dict[str, Any]) -> dict[str, Any]:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in data_config.items()}


def eval_transform(data_config: dict[str, Any]):
    """Resize + center crop + normalise: deterministic, the same in evaluate and the app."""
    return create_transform(**_timm_args(data_config), is_training=False)


def train_transform(data_config: dict[str, Any], augment: AugmentConfig):
    """Random resized crop (`train.augment.scale`), flip and optional colour jitter."""
    args = _timm_args(data_config)
    args.pop("crop_pct", None)
    args.pop("crop_mode", None)
    return create_transform(
        **args, is_training=True, scale=tuple(augment.scale), hflip=augment.hflip,
        color_jitter=augment.color_jitter if augment.color_jitter > 0 else None,
    )
