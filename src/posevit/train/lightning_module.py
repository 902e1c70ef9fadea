"""The LightningModule: loss, metrics, optimiser and schedule around any timm classifier.

The fine-tuning knobs people bring from timm's train.py live here: layer-wise LR decay
(`train.layer_decay`), mixup/CutMix with a soft-target loss (`train.mixup`, `train.cutmix`)
and an exponential moving average of the weights (`train.ema_decay`) that validation and the
saved bundle use.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import param_groups_layer_decay
from timm.utils import ModelEmaV3
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from posevit.core.config import TrainConfig
from posevit.data.store import LABELS, PIXELS
from posevit.train.distill import Distiller


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR factor per optimiser step: linear warm-up, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def parameter_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and norm scales (1-d), and with `layer_decay` a learning
    rate per depth. timm's `param_groups_layer_decay` only records an `lr_scale`, which only timm's
    schedulers read; the scaled rate is written into each group's `lr` here, so LambdaLR (which
    multiplies every group's initial lr by the same factor) keeps the ratios through warm-up and cosine.
    """
    if cfg.layer_decay is None:
        trainable = [p for p in model.parameters() if p.requires_grad]
        return [
            {"params": [p for p in trainable if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0},
        ]
    no_weight_decay = getattr(model, "no_weight_decay", None)  # timm models name their position embeddings etc.
    skip = no_weight_decay() if callable(no_weight_decay) else ()
    groups = param_groups_layer_decay(model, cfg.weight_decay, no_weight_decay_list=skip, layer_decay=cfg.layer_decay)
    for group in groups:
        group["lr"] = cfg.lr * group.pop("lr_scale")
    return groups


class ActionClassifier(pl.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        train_cfg: TrainConfig,
        frozen_modules: list[nn.Module] | None = None,
        distiller: Distiller | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.distiller = distiller  # a plain object: its teacher stays out of optimiser, checkpoints and train()
        self.cfg = train_cfg
        self.frozen_modules = list(frozen_modules or [])  # plain list: already submodules of `model`
        self.criterion = nn.CrossEntropyLoss(label_smoothing=train_cfg.label_smoothing)
        self.mixup: Mixup | None = None
        if train_cfg.mixes:
            self.mixup = Mixup(
                mixup_alpha=train_cfg.mixup,
                cutmix_alpha=train_cfg.cutmix,
                prob=train_cfg.mixup_prob,
                switch_prob=train_cfg.mixup_switch_prob,
                label_smoothing=train_cfg.label_smoothing,  # folded into the soft targets
                num_classes=num_classes,
            )
            self.soft_criterion = SoftTargetCrossEntropy()
        # A submodule, so resuming restores it; validation and the bundle use it when it is on.
        self.ema: ModelEmaV3 | None = None
        if train_cfg.ema_decay is not None:
            self.ema = ModelEmaV3(model, decay=train_cfg.ema_decay, use_warmup=train_cfg.ema_warmup)
        self._ema_step = 0
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    @property
    def inference_model(self) -> nn.Module:
        """What validation runs and the bundle keeps: the EMA weights when `train.ema_decay` is set."""
        return self.ema.module if self.ema is not None else self.model

    def train(self, mode: bool = True) -> ActionClassifier:
        # Frozen blocks keep inference behaviour (dropout off, BatchNorm statistics fixed).
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        if self.ema is not None:
            self.ema.eval()
        return self

    def on_fit_start(self) -> None:
        if self.distiller is not None:
            self.distiller.to(self.device, next(self.model.parameters()).dtype)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)

    def _log(self, stage: str, loss: torch.Tensor, accuracy: MulticlassAccuracy, size: int) -> None:
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pixels, labels = batch[PIXELS].contiguous(memory_format=torch.channels_last), batch[LABELS]
        if self.mixup is not None:
            pixels, soft_targets = self.mixup(pixels, labels)
            logits = self(pixels)
            loss = self.soft_criterion(logits, soft_targets)
        else:
            logits = self(pixels)
            loss = self.criterion(logits, labels)
        if self.distiller is not None:  # the teacher sees this very (augmented, mixed) batch
            kd_loss = self.distiller.kd_loss(logits, pixels)
            self.log("train/kd_loss", kd_loss, on_step=False, on_epoch=True, batch_size=labels.shape[0], sync_dist=True)
            loss = self.distiller.combine(loss, kd_loss)
        # Against the hard labels: with mixing this is the share of images whose dominant label won.
        self.train_acc(logits, labels)
        self._log("train", loss, self.train_acc, labels.shape[0])
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # Once per optimiser step (with gradient accumulation, not every batch is one).
        if self.ema is not None and self.global_step > self._ema_step:
            self.ema.update(self.model, step=self.global_step)
            self._ema_step = self.global_step

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        pixels, labels = batch[PIXELS].contiguous(memory_format=torch.channels_last), batch[LABELS]
        logits = self.inference_model(pixels)
        self.val_acc(logits, labels)
        self._log("val", self.criterion(logits, labels), self.val_acc, labels.shape[0])

    def configure_optimizers(self):
        # One fused kernel for the whole update instead of a loop of elementwise ops (CPU and CUDA).
        fused = self.device.type in ("cpu", "cuda") or None
        optimizer = torch.optim.AdamW(parameter_groups(self.model, self.cfg), lr=self.cfg.lr, fused=fused)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = min(total, self.cfg.warmup_epochs * max(1, total // max(1, self.trainer.max_epochs or 1)))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
