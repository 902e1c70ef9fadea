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
    overlay: dict = {}
    pretrained = cfg.pretrained or cfg.weights is not None
    if cfg.weights is not None:
        weights = Path(cfg.weights)
        if not weights.is_file():
            raise ConfigError(f"model.weights = {cfg.weights!r}: no such file")
        overlay["file"] = str(weights.resolve())
    if cfg.img_size is not None:
        overlay |= input_size_overlay(cfg.img_size)
    if overlay:
        kwargs["pretrained_cfg_overlay"] = overlay
    try:
        model = timm.create_model(cfg.name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        source = cfg.weights or "the hub"
        raise ConfigError(
            f"model.name = {cfg.name!r}: cannot load pretrained weights from {source}: {exc}\n"
            "  Offline? Download the safetensors file elsewhere and set model.weights=<path>."
        ) from None
    check_patch_multiple(model, cfg)
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


def input_size_overlay(side: int) -> dict:
    """The pretrained-config change that builds a model for `side` x `side` inputs.

    timm sizes a fixed-size model (a ViT's position embedding) from its pretrained config's `input_size`
    and resamples pretrained position embeddings to it at load; `resolve_model_data_config` reads the same
    entry, so the data config (and the bundle, the exports) follow the model as built.
    """
    return {"input_size": (3, side, side)}


def check_patch_multiple(model: nn.Module, cfg: ModelConfig) -> None:
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if cfg.img_size is not None and isinstance(patch, tuple | list) and cfg.img_size % int(patch[0]):
        raise ConfigError(
            f"model.img_size = {cfg.img_size} is not a multiple of {cfg.name}'s patch size {patch[0]}: "
            f"choose e.g. {cfg.img_size // patch[0] * patch[0]}"
        )


def set_fused_attention(model: nn.Module, fused: bool) -> int:
    """Switch every timm attention layer between the fused SDPA kernel and explicit matmuls (same maths,
    same weights); returns how many layers it switched."""
    layers = [module for module in model.modules() if hasattr(module, "fused_attn")]
    for module in layers:
        module.fused_attn = fused  # type: ignore[assignment]  # a plain bool timm reads on each forward
    return len(layers)
