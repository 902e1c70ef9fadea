"""`vit_convstem_tiny`: a small ViT whose patch embedding is a convolutional stem.

A plain linear patch embedding trained from scratch on a few thousand small images stays
at chance; a few conv layers in front (as in timm's hybrid ViTs) give the transformer
local features to attend over, and it learns in minutes on a CPU. Built from timm's own
parts (ConvNormAct, HybridEmbed, VisionTransformer) and registered with timm, so the
rest of the pipeline treats it like any timm ViT.
"""

from __future__ import annotations

from functools import partial

from timm.layers import ConvNormAct, HybridEmbed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn


def conv_stem(in_chans: int = 3, widths: tuple[int, ...] = (16, 32, 64, 128)) -> nn.Sequential:
    """3x3 conv + BatchNorm + ReLU, then 2x2 max-pool, per width: 96 px -> 6x6 features."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [ConvNormAct(in_chans, width, kernel_size=3), nn.MaxPool2d(2)]
        in_chans = width
    return nn.Sequential(*layers)


def _cfg(**kwargs) -> dict:
    return {
        "url": "",
        "num_classes": 15,
        "input_size": (3, 96, 96),
        "pool_size": None,
        # The whole scene matters (props at the edges): evaluate on the full image.
        "crop_pct": 1.0,
        "interpolation": "bicubic",
        "fixed_input_size": True,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "patch_embed.backbone.0.conv",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"vit_convstem_tiny.untrained": _cfg(), "vit_convstem_micro.untrained": _cfg()})


def _convstem_vit(
    name: str, pretrained: bool, widths: tuple[int, ...], embed_dim: int, depth: int, num_heads: int, **kwargs
) -> VisionTransformer:
    """A timm ViT over a conv stem of `widths` (each stage halves the side): 96 px in, one token per stem cell."""
    backbone = conv_stem(kwargs.get("in_chans", 3), widths=widths)
    model_args = dict(
        img_size=96,
        patch_size=1,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        global_pool="avg",
        class_token=False,
        embed_layer=partial(HybridEmbed, backbone=backbone),
    )
    return build_model_with_cfg(
        VisionTransformer, name, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **dict(model_args, **kwargs)
    )


@register_model
def vit_convstem_tiny(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Conv stem (16/32/64/128) + 3 transformer blocks of width 128, 4 heads, avg pool (~0.9M params)."""
    return _convstem_vit("vit_convstem_tiny", pretrained, (16, 32, 64, 128), 128, 3, 4, **kwargs)


@register_model
def vit_convstem_micro(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """A distillation student: conv stem (8/16/32/64) + 2 blocks of width 64, 2 heads, avg pool (~0.13M params,
    about a fifth of vit_convstem_tiny's parameters and a quarter of its multiply-adds)."""
    return _convstem_vit("vit_convstem_micro", pretrained, (8, 16, 32, 64), 64, 2, 2, **kwargs)
