"""Train the configured ViT on the processed splits and leave a model bundle (the train stage's work)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from dvclive.lightning import DVCLiveLogger
from pytorch_lightning.callbacks import Callback, ModelCheckpoint, TQDMProgressBar

import posevit
from posevit.bundle import MODELS_DIR, save_bundle
from posevit.config import PipelineConfig
from posevit.data.store import PROCESSED_DIR, load_split
from posevit.datamodule import ActionDataModule
from posevit.lit_module import ActionClassifier
from posevit.models.factory import create_model
from posevit.models.freeze import count_parameters, freeze_blocks
from posevit.precision import resolve_precision
from posevit.transforms import eval_transform, model_data_config, train_transform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    data: Path = PROCESSED_DIR
    models: Path = MODELS_DIR
    checkpoints: Path = Path("checkpoints/train")  # resume state; outside DVC outs, removed on success
    live: Path = Path("dvclive/train")
    metrics: Path = Path("metrics/train.json")
    curves: Path = Path("plots/training_curves.png")


class ImagesPerSecond(Callback):
    """Training throughput in images/s: shown on the progress bar, totalled for metrics."""

    def __init__(self) -> None:
        self.images = 0
        self.seconds = 0.0
        self._batch_start = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds += time.perf_counter() - self._batch_start
        self.images += int(batch["labels"].shape[0]) * trainer.world_size
        pl_module.log("img/s", self.rate, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def run_fingerprint(cfg: PipelineConfig, data_dir: Path) -> str:
    """What a checkpoint must match to be resumed: training params and the exact data."""
    state = {
        "params": cfg.model_dump(include={"model", "train", "trainer"}, mode="json"),
        "data": [json.loads((data_dir / split / "state.json").read_text())["_fingerprint"] for split in ("train", "val")],
    }
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def resumable_checkpoint(checkpoints: Path, fingerprint: str) -> Path | None:
    """`last.ckpt` of an interrupted run with the same fingerprint; stale state is discarded."""
    last, stamp = checkpoints / "last.ckpt", _stamp(checkpoints)
    if last.is_file() and stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return last
    if checkpoints.exists():
        log.info("discarding checkpoints of a different run in %s", checkpoints)
        shutil.rmtree(checkpoints)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint)
    return None


def _stamp(checkpoints: Path) -> Path:
    return checkpoints.with_name(checkpoints.name + ".fingerprint")


def best_weights(checkpoint: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The model's tensors and the 0-based epoch from a Lightning checkpoint, read once (weights only)."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    weights = {name.removeprefix("model."): tensor for name, tensor in saved["state_dict"].items()
               if name.startswith("model.")}
    return weights, int(saved["epoch"])


def train(cfg: PipelineConfig, paths: TrainPaths = TrainPaths()) -> dict[str, Any] | None:
    """Fit, keep the best epoch by val/acc as the bundle; returns metrics/train.json's content on rank 0."""
    pl.seed_everything(cfg.train.seed, workers=True)
    class_names = load_split("train", paths.data).features["labels"].names
    model = create_model(cfg.model, num_classes=len(class_names))
    frozen = freeze_blocks(model, cfg.model.freeze_blocks)
    trainable, total = count_parameters(model)
    model = model.to(memory_format=torch.channels_last)  # ~25% faster convolutions on CPU
    data_config = model_data_config(model)
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    log.info("precision %s; %s of %s parameters trainable (%d of %d blocks frozen)",
             precision, f"{trainable:,}", f"{total:,}", cfg.model.freeze_blocks, len(model.blocks))

    datamodule = ActionDataModule(train_transform(data_config, cfg.train.augment), eval_transform(data_config),
                                  cfg.train.batch_size, cfg.train.num_workers, paths.data)
    module = ActionClassifier(model, len(class_names), cfg.train, frozen)
    resume = resumable_checkpoint(paths.checkpoints, run_fingerprint(cfg, paths.data))
    if resume:
        log.info("resuming the interrupted run from %s", resume)
    checkpoint = ModelCheckpoint(dirpath=paths.checkpoints, filename="best", monitor="val/acc", mode="max",
                                 save_top_k=1, save_last=True)
    throughput = ImagesPerSecond()
    trainer = pl.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, strategy=cfg.trainer.strategy,
        num_nodes=cfg.trainer.num_nodes, precision=precision, max_epochs=cfg.train.epochs,
        logger=DVCLiveLogger(dir=str(paths.live), resume=resume is not None, save_dvc_exp=False, dvcyaml=False),
        callbacks=[checkpoint, throughput, TQDMProgressBar(refresh_rate=10)],
        deterministic=True, enable_model_summary=False, log_every_n_steps=10,
    )
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    wall_time = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None

    weights, best_epoch = best_weights(Path(checkpoint.best_model_path))
    model.load_state_dict(weights)
    metrics = {
        "best_val_acc": round(float(checkpoint.best_model_score), 6),
        "best_epoch": best_epoch + 1,
        "epochs": cfg.train.epochs,
        "wall_time_s": round(wall_time, 1),
        "train_images_per_s": round(throughput.rate, 1),
        "precision": precision,
        "trainable_params": trainable,
        "total_params": total,
    }
    save_bundle(paths.models, model, {
        "model_name": cfg.model.name,
        "labels": class_names,
        "data_config": data_config,
        "freeze_blocks": cfg.model.freeze_blocks,
        "params": cfg.model_dump(include={"model", "train", "trainer"}, mode="json"),
        # Timings stay out: they vary run to run, and the bundle's bytes name its registry version.
        "metrics": {key: metrics[key] for key in ("best_val_acc", "best_epoch", "epochs")},
        "versions": {"posevit": posevit.__version__, "timm": _version("timm"), "torch": torch.__version__},
    })
    shutil.rmtree(paths.checkpoints, ignore_errors=True)
    _stamp(paths.checkpoints).unlink(missing_ok=True)
    return metrics


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
