"""The LightningModule: loss, metrics, optimiser and schedule around any timm classifier."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from posevit.core.config import TrainConfig
from posevit.data.store import LABELS, PIXELS


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR factor per optimiser step: linear warm-up, then cosine decay to zero."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class ActionClassifier(pl.LightningModule):
    def __init__(
        self, model: nn.Module, num_classes: int, train_cfg: TrainConfig, frozen_modules: list[nn.Module] | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.cfg = train_cfg
        self.frozen_modules = list(frozen_modules or [])  # plain list: already submodules of `model`
        self.criterion = nn.CrossEntropyLoss(label_smoothing=train_cfg.label_smoothing)
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def train(self, mode: bool = True) -> ActionClassifier:
        # Frozen blocks keep inference behaviour (dropout off, BatchNorm statistics fixed).
        super().train(mode)
        for module in self.frozen_modules:
            module.eval()
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels)

    def _step(self, batch: dict[str, torch.Tensor], stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        pixels = batch[PIXELS].contiguous(memory_format=torch.channels_last)
        logits = self(pixels)
        loss = self.criterion(logits, batch[LABELS])
        accuracy(logits, batch[LABELS])
        size = batch[LABELS].shape[0]
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train", self.train_acc)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val", self.val_acc)

    def configure_optimizers(self):
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        # No weight decay on biases and norm scales (1-d), as in timm's own recipes.
        decay = [p for p in trainable if p.ndim > 1]
        no_decay = [p for p in trainable if p.ndim <= 1]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.cfg.lr,
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = min(total, self.cfg.warmup_epochs * max(1, total // max(1, self.trainer.max_epochs or 1)))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
