"""The training transform: timm's augmentation at the model's input size (`train.augment.*`)."""

from __future__ import annotations

from timm.data import create_transform

from posevit.core.config import AugmentConfig
from posevit.models.bundle_config import DataConfig
from posevit.models.transforms import timm_transform_args


def train_transform(data_config: DataConfig, augment: AugmentConfig):
    """Random resized crop (`train.augment.scale`), flip, and optional colour jitter, auto-augment policy
    (RandAugment, TrivialAugment, ...) and random erasing, all through timm's `create_transform`."""
    args = timm_transform_args(data_config)
    args.pop("crop_pct", None)
    args.pop("crop_mode", None)
    return create_transform(
        **args,
        is_training=True,
        scale=(augment.scale[0], augment.scale[1]),
        hflip=augment.hflip,
        # None, not 0: timm's default is 0.4, and even a zero ColorJitter draws random numbers.
        color_jitter=augment.color_jitter if augment.color_jitter > 0 else None,  # type: ignore[arg-type]  # timm's annotation omits the None it accepts
        auto_augment=augment.auto_augment,
        re_prob=augment.re_prob,
    )
