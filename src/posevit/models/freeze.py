"""Partial fine-tuning: freeze the stem and the first N blocks of a timm backbone.

Two layouts cover the backbones of `conf/model/`: a stack of transformer blocks (`blocks`: ViT, DeiT,
DINOv2, SigLIP, EVA-02) and stages of blocks (`stages[i].blocks`: ConvNeXt and timm's other staged
convnets), counted in forward order as timm's layer-decay groups count them.
"""

from __future__ import annotations

from torch import nn

from posevit.core.errors import ConfigError

_EMBEDDING_PARAMETERS = ("cls_token", "reg_token", "pos_embed")
SUPPORTED_LAYOUTS = "`blocks` (ViT, DINOv2, SigLIP, EVA-02) or `stages[i].blocks` (ConvNeXt)"


def backbone_layers(model: nn.Module) -> tuple[list[nn.Module], list[list[nn.Module]]]:
    """(stem modules, then one list of modules per block in forward order).

    A stage's downsampling layer comes with the stage's first block (as in timm's ConvNeXt layer groups):
    freezing that block freezes what feeds it.
    """
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.Sequential | nn.ModuleList):
        stem = [model.get_submodule("patch_embed"), *_present(model, "norm_pre")]
        return stem, [[block] for block in blocks]
    stages = getattr(model, "stages", None)
    if isinstance(stages, nn.Sequential | nn.ModuleList) and all(hasattr(s, "blocks") for s in stages):
        layers: list[list[nn.Module]] = []
        for stage in stages:
            stage_blocks: nn.Module = stage.get_submodule("blocks")
            for index, block in enumerate(stage_blocks.children()):
                layers.append([*_present(stage, "downsample"), block] if index == 0 else [block])
        return [model.get_submodule("stem")], layers
    raise ConfigError(
        f"model.freeze_blocks: {type(model).__name__} has neither {SUPPORTED_LAYOUTS}, so it can only train "
        "whole (model.freeze_blocks=0, with train.layer_decay to slow the lower layers) or as a linear probe "
        "(train.mode=linear_probe)"
    )


def _present(parent: nn.Module, name: str) -> list[nn.Module]:
    """`parent.name` when it holds parameters (timm puts an Identity where a layer is off)."""
    module = getattr(parent, name, None)
    return [module] if isinstance(module, nn.Module) and any(True for _ in module.parameters()) else []


def model_depth(model: nn.Module) -> int:
    """Blocks that `model.freeze_blocks` counts (0 for a layout it does not know: such a model trains whole)."""
    try:
        return len(backbone_layers(model)[1])
    except ConfigError:
        return 0


def freeze_blocks(model: nn.Module, n_blocks: int) -> list[nn.Module]:
    """Freeze the stem (patch embedding, class/register tokens, position embedding) and the first n blocks.

    0 freezes nothing (full fine-tuning); N >= 1 freezes the stem too, since a frozen block expects the
    inputs it was trained on. Returns the frozen modules, which must stay in eval mode (dropout off,
    BatchNorm statistics fixed) while training.
    """
    if n_blocks == 0:
        return []
    stem, layers = backbone_layers(model)
    depth = len(layers)
    if not 0 <= n_blocks <= depth:
        raise ConfigError(
            f"model.freeze_blocks = {n_blocks} is invalid: the model has {depth} blocks "
            f"(allowed: 0 <= value <= {depth}). Override it with model.freeze_blocks=<value>."
        )
    frozen = [*stem, *(module for layer in layers[:n_blocks] for module in layer)]
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
