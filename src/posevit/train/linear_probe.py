"""`train.mode=linear_probe`: the frozen backbone's pooled features, computed once per split, and a head trained
on them.

The usual first look at a new backbone (DINOv2's, CLIP's and MAE's papers all report it): minutes instead of the
hours of a fine-tune. One feature pass per split (train and val) runs the backbone in eval mode on the eval
transform, with no augmentation (a cached feature would otherwise freeze one random crop per image for every
epoch); the classifier head then trains on the cached tensors. The result is the train stage's usual bundle, the
whole model with the trained head, so evaluate, export and push need nothing new.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from dvclive.lightning import DVCLiveLogger
from pytorch_lightning.callbacks import Callback, EarlyStopping, TQDMProgressBar
from torch import nn
from torch.utils.data import DataLoader, StackDataset
from torchmetrics.classification import MulticlassAccuracy

from posevit.core.config import PipelineConfig, TrainConfig, TrainingPrecision
from posevit.core.errors import ConfigError
from posevit.core.precision import check_hardware, resolve_precision
from posevit.data.store import LABELS, PIXELS, class_names, load_split, with_pixels
from posevit.models.bundle import save_bundle
from posevit.models.factory import set_fused_attention
from posevit.models.freeze import count_parameters, model_depth
from posevit.models.transforms import eval_transform
from posevit.train.calibrate import calibrated_temperature
from posevit.train.lightning_module import parameter_groups, warmup_cosine
from posevit.train.loop import (
    BestWeights,
    Network,
    TrainMetrics,
    TrainPaths,
    build_network,
    bundle_config,
    load_best_weights,
    loader_workers,
    remove_checkpoints,
)

log = logging.getLogger(__name__)


def classifier_head(model: nn.Module) -> nn.Linear:
    """The model's linear classifier (timm's `get_classifier()`), the only part a probe trains."""
    get_classifier = getattr(model, "get_classifier", None)
    head = get_classifier() if callable(get_classifier) else None
    if not isinstance(head, nn.Linear) or not callable(getattr(model, "forward_head", None)):
        raise ConfigError(
            f"train.mode=linear_probe: {type(model).__name__} has no linear classifier behind timm's "
            "forward_head(pre_logits=True); probe a timm classifier (ViT, DINOv2, SigLIP, EVA-02, ConvNeXt)"
        )
    return head


def pooled_features(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """What the classifier sees: timm's pre-logits (class token, average or attention pool, head norm)."""
    return model.forward_head(model.forward_features(pixels), pre_logits=True)  # type: ignore[operator]


class FeaturePass(pl.LightningModule):
    """Lightning's predict loop over a split: device placement, precision and progress bar as in training."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = batch[PIXELS].contiguous(memory_format=torch.channels_last)
        return pooled_features(self.model, pixels).float(), batch[LABELS]


@dataclass(frozen=True)
class Features:
    """One split's pooled features (N, D) in float32 and its labels (N,)."""

    features: torch.Tensor
    labels: torch.Tensor

    def loader(self, batch_size: int, shuffle: bool) -> DataLoader:
        rows = StackDataset(**{PIXELS: self.features, LABELS: self.labels})  # type: ignore[arg-type]
        return DataLoader(rows, batch_size=batch_size, shuffle=shuffle)


def extract_features(
    cfg: PipelineConfig, network: Network, split: str, precision: TrainingPrecision, paths: TrainPaths
) -> Features:
    """One pass of the frozen backbone over `split` with the eval transform (trainer.limit_*_batches apply)."""
    images = with_pixels(load_split(split, paths.data), eval_transform(network.data_config))
    workers = loader_workers(cfg)
    loader = DataLoader(
        images,
        batch_size=cfg.train.batch_size,
        num_workers=workers,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )
    limit = cfg.trainer.limit_train_batches if split == "train" else cfg.trainer.limit_val_batches
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        limit_predict_batches=limit,
        callbacks=[TQDMProgressBar(refresh_rate=10)],
        inference_mode=False,  # no_grad instead: inference tensors could not be saved for the head's backward
    )
    log.info("feature pass over the %s split (%d images)", split, len(images))
    batches: Any = trainer.predict(FeaturePass(network.model), loader)
    return Features(torch.cat([f for f, _ in batches]).cpu(), torch.cat([y for _, y in batches]).cpu())


class HeadClassifier(pl.LightningModule):
    """The classifier head on cached features: the loss, metrics and schedule of `ActionClassifier`, no backbone."""

    def __init__(self, head: nn.Linear, num_classes: int, cfg: TrainConfig) -> None:
        super().__init__()
        self.head, self.cfg = head, cfg
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.train_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes=num_classes, average="micro")

    def _step(self, stage: str, batch: dict[str, torch.Tensor], accuracy: MulticlassAccuracy) -> torch.Tensor:
        logits, labels = self.head(batch[PIXELS]), batch[LABELS]
        loss = self.criterion(logits, labels)
        accuracy(logits, labels)
        size = labels.shape[0]
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=size)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step("train", batch, self.train_acc)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step("val", batch, self.val_acc)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(parameter_groups(self.head, self.cfg), lr=self.cfg.lr)
        total = int(self.trainer.estimated_stepping_batches)
        warmup = min(total, self.cfg.warmup_epochs * max(1, total // max(1, self.trainer.max_epochs or 1)))
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def head_trainer(cfg: PipelineConfig, paths: TrainPaths, best: BestWeights) -> pl.Trainer:
    callbacks: list[Callback] = [best, TQDMProgressBar(refresh_rate=10)]
    if cfg.train.early_stopping_patience is not None:
        callbacks.append(EarlyStopping("val/acc", mode="max", patience=cfg.train.early_stopping_patience))
    return pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        precision="32-true",  # a (features x classes) matmul: nothing to gain from lower precision
        max_epochs=cfg.train.epochs,
        logger=DVCLiveLogger(dir=str(paths.live), resume=False, save_dvc_exp=False, dvcyaml=False),
        callbacks=callbacks,
        gradient_clip_val=cfg.train.grad_clip,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches,
        deterministic=True,
        enable_checkpointing=False,
        enable_model_summary=False,
        log_every_n_steps=10,
    )


def check_probe_devices(cfg: PipelineConfig) -> None:
    if cfg.trainer.num_nodes > 1:
        raise ConfigError(
            f"train.mode=linear_probe runs in one process on one device, not on trainer.num_nodes="
            f"{cfg.trainer.num_nodes}: set trainer.num_nodes=1 (one feature pass; the head trains in seconds)"
        )
    if cfg.trainer.devices != 1:
        log.info("train.mode=linear_probe uses one device of trainer.devices=%s", cfg.trainer.devices)


def train_linear_probe(cfg: PipelineConfig, paths: TrainPaths) -> TrainMetrics:
    """Features once per split, the head fitted on them, the best epoch's head in the full model's bundle."""
    check_hardware(cfg.trainer)
    check_probe_devices(cfg)
    pl.seed_everything(cfg.train.seed, workers=True)
    names = class_names(load_split("train", paths.data))
    network = build_network(cfg, len(names))
    head = classifier_head(network.model)
    network.model.requires_grad_(False)
    head.requires_grad_(True)
    set_fused_attention(network.model, True)  # no backward pass: the fused kernel is the fast one on CPUs too
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    trainable, total = count_parameters(network.model)
    log.info("linear probe of %s: %s of %s parameters trainable (the head)", cfg.model.name, f"{trainable:,}", total)
    log.info("train.augment does not apply: the feature pass uses the eval transform")

    started = time.perf_counter()
    train_split, val_split = (extract_features(cfg, network, split, precision, paths) for split in ("train", "val"))
    feature_seconds = time.perf_counter() - started
    images = len(train_split.labels) + len(val_split.labels)
    log.info("feature pass: %d images in %.1f s (%.1f images/s)", images, feature_seconds, images / feature_seconds)

    remove_checkpoints(paths.checkpoints)  # BestWeights must not compare against another run's record
    best = BestWeights(paths.checkpoints)
    probe = HeadClassifier(head, len(names), cfg.train)
    trainer = head_trainer(cfg, paths, best)
    trainer.fit(
        probe,
        train_dataloaders=train_split.loader(cfg.train.batch_size, shuffle=True),
        val_dataloaders=val_split.loader(cfg.train.batch_size, shuffle=False),
    )
    wall_time = time.perf_counter() - started
    log.info("head trained in %.1f s after the feature pass", wall_time - feature_seconds)

    network.model.cpu()
    record = load_best_weights(probe, best)  # into `head`, which is the model's own classifier
    with torch.no_grad():  # the val logits of the bundle's model, from the cached features
        temperature = calibrated_temperature(head(val_split.features).float(), val_split.labels)
    metrics = TrainMetrics(
        best_val_acc=round(record["val_acc"], 6),
        best_epoch=record["epoch"] + 1,
        epochs=trainer.current_epoch,
        wall_time_s=round(wall_time, 1),
        train_images_per_s=round(images / feature_seconds, 1),  # the probe's cost: images through the backbone
        precision=precision,
        trainable_params=trainable,
        total_params=total,
    )
    config = bundle_config(cfg, names, network.data_config, temperature, metrics)
    save_bundle(paths.models, network.model, config.model_copy(update={"freeze_blocks": model_depth(network.model)}))
    remove_checkpoints(paths.checkpoints)
    return metrics
