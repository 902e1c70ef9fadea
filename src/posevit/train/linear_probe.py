"""`train.mode=linear_probe`: the frozen backbone's pooled features, computed once per split, and a head trained
on them.

The usual first look at a new backbone (DINOv2's, CLIP's and MAE's papers all report it): minutes instead of the
hours of a fine-tune. One feature pass per split (train and val) runs the backbone in eval mode on the eval
transform, with no augmentation (a cached feature would otherwise freeze one random crop per image for every
epoch); the classifier head then trains on the cached tensors. `posevit.train.loop` makes the train stage's
usual bundle of the result, the whole model with the trained head, so evaluate, export and push need nothing new.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from dvclive.lightning import DVCLiveLogger
from pytorch_lightning.callbacks import TQDMProgressBar
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from posevit.core.config import PipelineConfig, TrainConfig, TrainingPrecision
from posevit.core.errors import ConfigError
from posevit.data.store import LABELS, PIXELS, load_split, with_pixels
from posevit.models.bundle_config import DataConfig
from posevit.models.factory import set_fused_attention
from posevit.models.freeze import count_parameters
from posevit.models.transforms import eval_transform
from posevit.train.calibrate import calibrated_temperature
from posevit.train.lightning_module import parameter_groups, warmup_cosine

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


def extract_features(
    cfg: PipelineConfig,
    model: nn.Module,
    data_config: DataConfig,
    split: str,
    data_dir: Path,
    precision: TrainingPrecision,
    workers: int,
) -> Features:
    """One pass of the frozen backbone over `split` with the eval transform (trainer.limit_*_batches apply)."""
    images = with_pixels(load_split(split, data_dir), eval_transform(data_config))
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
    batches: Any = trainer.predict(FeaturePass(model), loader)
    return Features(torch.cat([f for f, _ in batches]).cpu(), torch.cat([y for _, y in batches]).cpu())


@dataclass
class BestHead:
    """The best epoch by val/acc (ties keep the earlier one, as the fine-tune's BestWeights does)."""

    val_acc: float = -1.0
    epoch: int = -1  # 0-based
    state: dict[str, torch.Tensor] = field(default_factory=dict)


def fit_head(head: nn.Linear, train: Features, val: Features, cfg: TrainConfig, live_dir: Path) -> tuple[BestHead, int]:
    """AdamW with warm-up + cosine on the cached features; (best epoch, epochs run).

    A plain loop rather than Lightning: a step is one small matmul, so Lightning's per-step and DVCLiveLogger's
    per-log overhead (it inspects the call stack) would be nearly all of the time. The curves still go to
    DVCLive under the fine-tune's names (train/loss, train/acc, val/loss, val/acc), one step per epoch.
    """
    generator = torch.Generator().manual_seed(cfg.seed)
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    optimizer = torch.optim.AdamW(parameter_groups(head, cfg), lr=cfg.lr)
    steps_per_epoch = math.ceil(len(train.labels) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(min(total, cfg.warmup_epochs * steps_per_epoch), total)
    )
    # The fine-tune's logger, as it configures DVCLive, but written to directly: its Lightning hook is what is slow.
    live = DVCLiveLogger(dir=str(live_dir), resume=False, save_dvc_exp=False, dvcyaml=False).experiment
    best, stale, epochs = BestHead(), 0, 0
    for epoch in (bar := tqdm(range(cfg.epochs), desc="head", unit="epoch")):
        loss_sum, correct = 0.0, 0
        for rows in torch.randperm(len(train.labels), generator=generator).split(cfg.batch_size):
            logits, labels = head(train.features[rows]), train.labels[rows]
            loss = criterion(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            loss_sum += float(loss.detach()) * len(rows)
            correct += int((logits.argmax(1) == labels).sum())
        with torch.no_grad():
            val_logits = head(val.features)
        val_acc = float((val_logits.argmax(1) == val.labels).float().mean())
        curves = {
            "train/loss": loss_sum / len(train.labels),
            "train/acc": correct / len(train.labels),
            "val/loss": float(criterion(val_logits, val.labels)),
            "val/acc": val_acc,
        }
        for name, value in curves.items():
            live.log_metric(name, value)
        live.next_step()
        bar.set_postfix({"val/acc": f"{val_acc:.3f}"})
        epochs = epoch + 1
        if val_acc > best.val_acc:
            best, stale = BestHead(val_acc, epoch, {k: v.detach().clone() for k, v in head.state_dict().items()}), 0
        else:
            stale += 1
            if cfg.early_stopping_patience is not None and stale >= cfg.early_stopping_patience:
                break
    live.end()
    return best, epochs


def check_probe_devices(cfg: PipelineConfig) -> None:
    if cfg.trainer.num_nodes > 1:
        raise ConfigError(
            f"train.mode=linear_probe runs in one process on one device, not on trainer.num_nodes="
            f"{cfg.trainer.num_nodes}: set trainer.num_nodes=1 (one feature pass; the head trains in seconds)"
        )
    if cfg.trainer.devices != 1:
        log.info("train.mode=linear_probe uses one device of trainer.devices=%s", cfg.trainer.devices)


@dataclass(frozen=True)
class ProbeResult:
    best: BestHead
    epochs: int
    temperature: float
    wall_time_s: float
    images_per_s: float  # through the backbone in the feature pass: a probe's cost
    trainable: int
    total: int


def fit_linear_probe(
    cfg: PipelineConfig,
    model: nn.Module,
    data_config: DataConfig,
    data_dir: Path,
    live_dir: Path,
    precision: TrainingPrecision,
    workers: int,
) -> ProbeResult:
    """Features once per split, the head fitted on them; `model` leaves with the best epoch's head, on the CPU."""
    check_probe_devices(cfg)
    head = classifier_head(model)
    model.requires_grad_(False)
    head.requires_grad_(True)
    set_fused_attention(model, True)  # no backward pass: the fused kernel is the fast one on CPUs too
    trainable, total = count_parameters(model)
    log.info("linear probe of %s: %s of %s parameters trainable (the head)", cfg.model.name, f"{trainable:,}", total)
    log.info("train.augment does not apply: the feature pass uses the eval transform")

    started = time.perf_counter()
    train_split, val_split = (
        extract_features(cfg, model, data_config, split, data_dir, precision, workers) for split in ("train", "val")
    )
    feature_seconds = time.perf_counter() - started
    images = len(train_split.labels) + len(val_split.labels)
    log.info("feature pass: %d images in %.1f s (%.1f images/s)", images, feature_seconds, images / feature_seconds)

    model.cpu()  # the head trains on the CPU: a (features x classes) matmul per step
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steps this small lose to thread hand-offs (measured: 0.4 ms a step on 1, 30 on 2)
    try:
        best, epochs = fit_head(head, train_split, val_split, cfg.train, live_dir)
    finally:
        torch.set_num_threads(threads)
    wall_time = time.perf_counter() - started
    log.info("head trained in %.1f s after the feature pass", wall_time - feature_seconds)

    head.load_state_dict(best.state)  # the model's own classifier: the whole model is the bundle
    with torch.no_grad():  # the val logits of the bundle's model, from the cached features
        temperature = calibrated_temperature(head(val_split.features), val_split.labels)
    return ProbeResult(
        best, epochs, temperature, round(wall_time, 1), round(images / feature_seconds, 1), trainable, total
    )
