"""Train the configured ViT on the processed splits and leave a model bundle (the train stage's work)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TypedDict

import pytorch_lightning as pl
import safetensors.torch
import torch
from dvclive.lightning import DVCLiveLogger
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint, TQDMProgressBar
from torch import nn

import posevit
from posevit.core import paths as default_paths
from posevit.core.config import PipelineConfig, TrainingPrecision
from posevit.core.cores import usable_cores
from posevit.core.entrypoint import write_json
from posevit.core.errors import ConfigError
from posevit.core.hashing import hash_directory
from posevit.core.precision import check_hardware, resolve_fused_attention, resolve_precision
from posevit.data.store import LABELS, class_names, load_split
from posevit.models.bundle import save_bundle
from posevit.models.bundle_config import BundleConfig, DataConfig, TrainingSummary
from posevit.models.factory import create_model, set_fused_attention
from posevit.models.freeze import count_parameters, freeze_blocks, model_depth
from posevit.models.transforms import eval_transform, model_data_config
from posevit.train.augment import train_transform
from posevit.train.calibrate import calibrated_temperature, split_logits
from posevit.train.datamodule import ActionDataModule
from posevit.train.distill import load_distiller
from posevit.train.lightning_module import ActionClassifier
from posevit.train.linear_probe import fit_linear_probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    data: Path = default_paths.PROCESSED_DIR
    models: Path = default_paths.MODELS_DIR
    checkpoints: Path = default_paths.CHECKPOINTS_DIR
    live: Path = default_paths.LIVE_DIR
    metrics: Path = default_paths.TRAIN_METRICS
    curves: Path = default_paths.CURVES_PLOT
    teacher: Path | None = None  # train.distill's teacher as a bundle folder, when the entry point fetched it

    @classmethod
    def under(cls, root: Path, data: Path = default_paths.PROCESSED_DIR, teacher: Path | None = None) -> TrainPaths:
        """The project's layout inside another directory (a sweep run's): root/models, root/checkpoints/train, ..."""
        outputs = ("models", "checkpoints", "live", "metrics", "curves")
        return cls(data=data, teacher=teacher, **{name: root / getattr(cls, name) for name in outputs})


class TrainMetrics(TypedDict):
    """`metrics/train.json`."""

    best_val_acc: float
    best_epoch: int  # 1-based
    epochs: int
    wall_time_s: float
    train_images_per_s: float
    precision: str
    trainable_params: int
    total_params: int


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
        self.images += int(batch[LABELS].shape[0]) * trainer.world_size
        pl_module.log("img/s", self.rate, prog_bar=True, logger=False, on_step=True, on_epoch=False)

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0


def run_fingerprint(cfg: PipelineConfig, data_dir: Path, teacher: Path | None = None) -> str:
    """What a checkpoint must match to be resumed: training params, the exact data (and teacher)."""
    state = {
        "params": cfg.model_dump(include={"model", "train", "trainer"}, mode="json"),
        "data": [hash_directory(data_dir / split) for split in ("train", "val")],
    }
    if teacher is not None:  # an alias (registry:latest) may name another teacher than the interrupted run's
        state["teacher"] = hash_directory(teacher)
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


class BestWeights(Callback):
    """The best epoch's weights by val/acc, as safetensors beside the resume checkpoint (no pickles to read back).

    Its record survives a killed run, so a resumed run still compares against the best before the kill.
    Ties keep the earlier epoch, as Lightning's ModelCheckpoint does.
    """

    def __init__(self, directory: Path) -> None:
        self.weights, self.record = directory / "best.safetensors", directory / "best.json"

    def best(self) -> dict | None:
        return json.loads(self.record.read_text()) if self.record.is_file() else None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        score = float(trainer.callback_metrics["val/acc"])
        best = self.best()
        if best is None or score > best["val_acc"]:
            model = pl_module.inference_model if isinstance(pl_module, ActionClassifier) else pl_module
            self.weights.parent.mkdir(parents=True, exist_ok=True)
            state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
            safetensors.torch.save_file(state, str(self.weights))
            write_json(self.record, {"val_acc": score, "epoch": trainer.current_epoch})


def loader_workers(cfg: PipelineConfig) -> int:
    """`train.num_workers`, with `auto` = the cores this process may use, shared by the devices of this node."""
    if cfg.train.num_workers != "auto":
        return cfg.train.num_workers
    cores = usable_cores()
    devices = cfg.trainer.devices
    if devices == "auto":
        gpus = torch.cuda.device_count() if cfg.trainer.accelerator in ("gpu", "cuda", "auto") else 0
        return max(1, cores // max(1, gpus))
    return max(1, cores // devices)


@dataclass(frozen=True)
class Network:
    """The model to train, as built for this run, and what the run reports about it."""

    model: nn.Module
    frozen: list[nn.Module]
    trainable: int
    total: int
    fused_attention: bool
    data_config: DataConfig


def build_network(cfg: PipelineConfig, num_classes: int) -> Network:
    """The configured timm model with its frozen blocks, channels-last memory and attention kernel."""
    model = create_model(cfg.model, num_classes=num_classes)
    frozen = freeze_blocks(model, cfg.model.freeze_blocks)
    trainable, total = count_parameters(model)
    model = model.to(memory_format=torch.channels_last)  # ~25% faster convolutions on CPU
    fused_attention = resolve_fused_attention(cfg.trainer)
    set_fused_attention(model, fused_attention)
    return Network(model, frozen, trainable, total, fused_attention, model_data_config(model))


def log_setup(cfg: PipelineConfig, network: Network, precision: TrainingPrecision) -> None:
    log.info(
        "precision %s; attention %s; %s of %s parameters trainable (%d of %d blocks frozen)",
        precision,
        "fused kernel" if network.fused_attention else "matmuls",
        f"{network.trainable:,}",
        f"{network.total:,}",
        cfg.model.freeze_blocks,
        model_depth(network.model),
    )


def build_datamodule(cfg: PipelineConfig, data_config: DataConfig, data: Path) -> ActionDataModule:
    return ActionDataModule(
        train_transform(data_config, cfg.train.augment),
        eval_transform(data_config),
        cfg.train.batch_size,
        loader_workers(cfg),
        data,
        drop_last=cfg.train.mixes,
    )


def build_trainer(
    cfg: PipelineConfig, precision: TrainingPrecision, paths: TrainPaths, resume: Path | None, callbacks: list[Callback]
) -> pl.Trainer:
    return pl.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        strategy=cfg.trainer.strategy,
        num_nodes=cfg.trainer.num_nodes,
        precision=precision,
        max_epochs=cfg.train.epochs,
        logger=DVCLiveLogger(dir=str(paths.live), resume=resume is not None, save_dvc_exp=False, dvcyaml=False),
        callbacks=callbacks,
        gradient_clip_val=cfg.train.grad_clip,
        accumulate_grad_batches=cfg.train.accumulate_grad_batches,
        limit_train_batches=cfg.trainer.limit_train_batches,
        limit_val_batches=cfg.trainer.limit_val_batches,
        deterministic=True,
        enable_model_summary=False,
        log_every_n_steps=10,
    )


def training_callbacks(
    cfg: PipelineConfig, checkpoints: Path, best: BestWeights, throughput: ImagesPerSecond
) -> list[Callback]:
    """The best weights, the resume state, throughput, the progress bar and (if configured) early stopping."""
    # The whole training state of the latest epoch, overwritten each epoch, for resuming a killed run.
    resume_state = ModelCheckpoint(
        dirpath=checkpoints, filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    callbacks: list[Callback] = [best, resume_state, throughput, TQDMProgressBar(refresh_rate=10)]
    if cfg.train.early_stopping_patience is not None:
        callbacks.append(EarlyStopping("val/acc", mode="max", patience=cfg.train.early_stopping_patience))
    return callbacks


def load_best_weights(model: nn.Module, best: BestWeights) -> dict:
    """Put the best epoch's weights (the EMA's, when it was on) into `model`; returns that epoch's record."""
    record = best.best()
    if record is None:
        raise ConfigError("training ran no validation epoch, so there is no best model: check trainer/train settings")
    model.load_state_dict(safetensors.torch.load_file(str(best.weights)))
    return record


def calibrate(network: Network, data: Path, batch_size: int) -> float:
    """The temperature of `network.model` fitted on the validation split, rounded as the bundle stores it."""
    val = load_split("val", data)
    return calibrated_temperature(*split_logits(network.model, val, eval_transform(network.data_config), batch_size))


def bundle_config(
    cfg: PipelineConfig, names: list[str], data_config: DataConfig, temperature: float, metrics: TrainMetrics
) -> BundleConfig:
    return BundleConfig(
        model_name=cfg.model.name,
        labels=names,
        data_config=data_config,
        freeze_blocks=cfg.model.freeze_blocks,
        ema_decay=cfg.train.ema_decay,
        temperature=temperature,
        params=cfg.model_dump(include={"model", "train", "trainer"}, mode="json"),
        # Timings stay out: they vary run to run, and the bundle's bytes name its registry version.
        metrics=TrainingSummary(
            best_val_acc=metrics["best_val_acc"], best_epoch=metrics["best_epoch"], epochs=metrics["epochs"]
        ),
        versions={"posevit": posevit.__version__, "timm": version("timm"), "torch": torch.__version__},
    )


def remove_checkpoints(checkpoints: Path) -> None:
    shutil.rmtree(checkpoints, ignore_errors=True)
    _stamp(checkpoints).unlink(missing_ok=True)


def train(
    cfg: PipelineConfig, paths: TrainPaths = TrainPaths(), callbacks: Sequence[Callback] = ()
) -> TrainMetrics | None:
    """Fit, keep the best epoch by val/acc as the bundle; returns metrics/train.json's content on rank 0.
    `callbacks` join the run's own (e.g. a search's pruning callback)."""
    if cfg.train.mode == "linear_probe":
        return train_linear_probe(cfg, paths)
    check_hardware(cfg.trainer)
    pl.seed_everything(cfg.train.seed, workers=True)
    names = class_names(load_split("train", paths.data))
    network = build_network(cfg, len(names))
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    log_setup(cfg, network, precision)
    datamodule = build_datamodule(cfg, network.data_config, paths.data)
    distiller = load_distiller(cfg.train.distill, paths.teacher, names, network.data_config)
    module = ActionClassifier(network.model, len(names), cfg.train, network.frozen, distiller)
    if cfg.trainer.compile:
        network.model.compile()  # in place: parameter names (and so the bundle) stay those of the plain model
    fingerprint = run_fingerprint(cfg, paths.data, distiller.folder if distiller else None)
    resume = resumable_checkpoint(paths.checkpoints, fingerprint)
    if resume:
        log.info("resuming the interrupted run from %s", resume)
    best, throughput = BestWeights(paths.checkpoints), ImagesPerSecond()
    run_callbacks = [*training_callbacks(cfg, paths.checkpoints, best, throughput), *callbacks]
    trainer = build_trainer(cfg, precision, paths, resume, run_callbacks)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    wall_time = time.perf_counter() - started
    if not trainer.is_global_zero:
        return None

    record = load_best_weights(network.model, best)
    temperature = calibrate(network, paths.data, cfg.train.batch_size)
    metrics = TrainMetrics(
        best_val_acc=round(record["val_acc"], 6),
        best_epoch=record["epoch"] + 1,
        epochs=trainer.current_epoch,  # fewer than train.epochs when early stopping ended the run
        wall_time_s=round(wall_time, 1),
        train_images_per_s=round(throughput.rate, 1),
        precision=precision,
        trainable_params=network.trainable,
        total_params=network.total,
    )
    save_bundle(paths.models, network.model, bundle_config(cfg, names, network.data_config, temperature, metrics))
    remove_checkpoints(paths.checkpoints)
    return metrics


def train_linear_probe(cfg: PipelineConfig, paths: TrainPaths) -> TrainMetrics:
    """`train.mode=linear_probe` (posevit.train.linear_probe): a fine-tune's bundle and metrics, all blocks frozen."""
    check_hardware(cfg.trainer)
    pl.seed_everything(cfg.train.seed, workers=True)
    names = class_names(load_split("train", paths.data))
    network = build_network(cfg, len(names))
    precision = resolve_precision(cfg.trainer.precision, cfg.trainer.accelerator)
    probe = fit_linear_probe(
        cfg, network.model, network.data_config, paths.data, paths.live, precision, loader_workers(cfg)
    )
    metrics = TrainMetrics(
        best_val_acc=round(probe.best.val_acc, 6),
        best_epoch=probe.best.epoch + 1,
        epochs=probe.epochs,
        wall_time_s=probe.wall_time_s,
        train_images_per_s=probe.images_per_s,
        precision=precision,
        trainable_params=probe.trainable,
        total_params=probe.total,
    )
    config = bundle_config(cfg, names, network.data_config, probe.temperature, metrics)
    save_bundle(paths.models, network.model, config.model_copy(update={"freeze_blocks": model_depth(network.model)}))
    return metrics
