"""Build the configured timm model with a head for the dataset's classes."""

from __future__ import annotations

import logging
from pathlib import Path

import timm
from torch import nn

from posevit.core.config import ModelConfig
from posevit.core.errors import ConfigError
from posevit.models import convstem_vit  # noqa: F401  (registers vit_convstem_tiny with timm)

log = logging.getLogger(__name__)


def create_model(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """timm model `model.name`, pretrained from the hub, from `model.weights`, or from scratch.

    With `model.weights` timm loads a local safetensors file through its own pretrained
    path (`pretrained_cfg_overlay=dict(file=...)`), which is how offline clusters work:
    the checkpoint is filtered and its classifier dropped exactly as for hub weights.
    """
    if not timm.is_model(cfg.name.split(".")[0]):
        raise ConfigError(f"model.name = {cfg.name!r} is not a timm model (see timm.list_models('vit_*'))")
    kwargs: dict = {"num_classes": num_classes, "drop_path_rate": cfg.drop_path_rate}
    pretrained = cfg.pretrained or cfg.weights is not None
    if cfg.weights is not None:
        weights = Path(cfg.weights)
        if not weights.is_file():
            raise ConfigError(f"model.weights = {cfg.weights!r}: no such file")
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights.resolve())}
    try:
        model = timm.create_model(cfg.name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        source = cfg.weights or "the hub"
        raise ConfigError(
            f"model.name = {cfg.name!r}: cannot load pretrained weights from {source}: {exc}\n"
            "  Offline? Download the safetensors file elsewhere and set model.weights=<path>."
        ) from None
    log.info(
        "model %s (%s)",
        cfg.name,
        f"weights from {cfg.weights}"
        if cfg.weights
        else "pretrained from the hub"
        if cfg.pretrained
        else "from scratch",
    )
    return model


def set_fused_attention(model: nn.Module, fused: bool) -> int:
    """Switch every timm attention layer between the fused SDPA kernel and explicit matmuls (same maths,
    same weights); returns how many layers it switched."""
    layers = [module for module in model.modules() if hasattr(module, "fused_attn")]
    for module in layers:
        module.fused_attn = fused  # type: ignore[assignment]  # a plain bool timm reads on each forward
    return len(layers)
