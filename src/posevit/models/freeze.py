"""Partial fine-tuning: freeze the embeddings and the first N transformer blocks of a ViT."""

from __future__ import annotations

from torch import nn

from posevit.core.errors import ConfigError

_EMBEDDING_PARAMETERS = ("cls_token", "reg_token", "pos_embed")


def transformer_blocks(model: nn.Module) -> nn.Sequential | nn.ModuleList:
    """The ViT's stack of transformer blocks (timm calls it `blocks`)."""
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.Sequential | nn.ModuleList):
        raise ConfigError(f"model.name={type(model).__name__} has no `blocks`: freezing needs a timm ViT")
    return blocks


def model_depth(model: nn.Module) -> int:
    return len(transformer_blocks(model))


def freeze_blocks(model: nn.Module, n_blocks: int) -> list[nn.Module]:
    """Freeze patch embedding, class/register tokens, position embedding and blocks[:n_blocks].

    0 freezes nothing (full fine-tuning); N >= 1 freezes the embeddings too, since a
    frozen block expects the inputs it was trained on. Returns the frozen modules, which
    must stay in eval mode (dropout off, BatchNorm statistics fixed) while training.
    """
    depth = model_depth(model)
    if not 0 <= n_blocks <= depth:
        raise ConfigError(
            f"model.freeze_blocks = {n_blocks} is invalid: the model has {depth} blocks "
            f"(allowed: 0 <= value <= {depth}). Override it with model.freeze_blocks=<value>."
        )
    if n_blocks == 0:
        return []
    frozen = [model.get_submodule("patch_embed"), *transformer_blocks(model)[:n_blocks]]
    for module in frozen:
        module.requires_grad_(False)
    for name in _EMBEDDING_PARAMETERS:
        parameter = getattr(model, name, None)
        if isinstance(parameter, nn.Parameter):
            parameter.requires_grad_(False)
    return frozen


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
