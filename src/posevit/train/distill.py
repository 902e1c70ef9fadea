"""Knowledge distillation (`train.distill`): the student learns a frozen teacher's soft targets beside the labels.

The loss is Hinton et al.'s, as timm's `LogitDistillationTask` computes it:
(1 - alpha) x label loss + alpha x KL(softmax(teacher / T) || softmax(student / T)) x T^2.
The teacher is timm's `DistillationTeacher` around the bundle's model: frozen, in eval mode, and not a submodule
of the LightningModule, so Lightning's `train()` calls, the optimiser, checkpoints and the bundle never see it.
Its logits come from the very batch the student trains on (after augmentation and mixup/CutMix), under no_grad
and the run's autocast, so in the training precision.

A teacher with another input size or normalisation sees the same view, converted: resized to its input size with
its own filter (antialiased; resizing and the per-channel normalisation commute, both being linear), then
re-normalised from the student's mean/std to its own (timm's `normalize_input`). The random crop, flip and mix are
the view both models learn from; the teacher's eval framing (crop_pct) has no part in a training view.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.task.distillation import DistillationTeacher

from posevit.core.config import DistillConfig
from posevit.core.errors import ConfigError
from posevit.models.bundle import load_bundle
from posevit.models.bundle_config import BundleError, DataConfig

log = logging.getLogger(__name__)
RESIZE_MODES = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}  # else bilinear


def _channel_stats(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)


class Distiller:
    """The frozen teacher, how the student's batch is converted for it, and the KD loss."""

    def __init__(
        self, teacher: DistillationTeacher, folder: Path, inputs: tuple[DataConfig, DataConfig], cfg: DistillConfig
    ) -> None:
        """`inputs`: the student's data config, the teacher's."""
        student, own = inputs
        self.teacher, self.folder = teacher, folder
        self.alpha, self.temperature = cfg.alpha, cfg.temperature
        self.student_mean, self.student_std = _channel_stats(student["mean"]), _channel_stats(student["std"])
        size = tuple(own["input_size"][1:])
        self.size = size if size != tuple(student["input_size"][1:]) else None
        self.mode = RESIZE_MODES.get(own["interpolation"], "bilinear")

    def to(self, device: torch.device, dtype: torch.dtype) -> None:
        """Onto the student's device and parameter dtype (which `*-true` precisions change)."""
        self.teacher.to(device=device, dtype=dtype)
        self.student_mean = self.student_mean.to(device=device, dtype=dtype)
        self.student_std = self.student_std.to(device=device, dtype=dtype)

    @torch.no_grad()
    def teacher_logits(self, pixels: torch.Tensor) -> torch.Tensor:
        if self.size is not None:
            antialias = self.mode != "nearest"
            pixels = F.interpolate(pixels, size=self.size, mode=self.mode, antialias=antialias, align_corners=None)
        pixels = self.teacher.normalize_input(pixels, self.student_mean, self.student_std)
        return self.teacher(pixels.contiguous(memory_format=torch.channels_last))

    def kd_loss(self, student_logits: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """KL(softmax(teacher / T) || softmax(student / T)) x T^2 (the T^2 keeps the gradients' scale across T)."""
        t = self.temperature
        student = F.log_softmax(student_logits.float() / t, dim=-1)
        teacher = F.log_softmax(self.teacher_logits(pixels).float() / t, dim=-1)
        return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * t * t

    def combine(self, label_loss: torch.Tensor, kd_loss: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.alpha) * label_loss + self.alpha * kd_loss


def check_labels(teacher: list[str], data: list[str], spec: str) -> None:
    """The teacher's outputs must mean the student's classes, index for index."""
    if teacher == data:
        return
    only_data = [name for name in data if name not in teacher]
    only_teacher = [name for name in teacher if name not in data]
    if only_data or only_teacher:
        difference = f"only in the data: {only_data or 'none'}; only in the teacher: {only_teacher or 'none'}"
    else:
        difference = f"the same classes in another order; the teacher's: {teacher}"
    raise ConfigError(
        f"train.distill.teacher = {spec!r}: its labels are not the data's ({difference}). Distil from a teacher "
        "trained on this data (the same classes in the same order, as its bundle's config.json lists them)"
    )


def local_folder(cfg: DistillConfig) -> Path:
    if cfg.fetched:
        raise ConfigError(
            f"train.distill.teacher = {cfg.teacher!r} names a registry model: the train stage and `python -m "
            "posevit.sweep` fetch it; calling train() yourself, pass its bundle folder as TrainPaths(teacher=...)"
        )
    return Path(cfg.teacher)


def load_distiller(
    cfg: DistillConfig | None, folder: Path | None, labels: list[str], student: DataConfig
) -> Distiller | None:
    """The teacher of `cfg` from `folder` (fetched by the entry point) or from `cfg.teacher` itself, checked against
    the data's labels and the student's input; None when distillation is off (null, or alpha 0)."""
    if cfg is None or cfg.alpha == 0:
        return None
    folder = folder or local_folder(cfg)
    # Building the model draws initial weights: the run's random stream (its batches) stays that of a run without it.
    with torch.random.fork_rng(devices=[]):
        try:
            bundle = load_bundle(folder)
        except BundleError as exc:
            raise ConfigError(f"train.distill.teacher = {cfg.teacher!r}: {exc}") from None
    check_labels(bundle.labels, labels, cfg.teacher)
    if bundle.data_config["input_size"][0] != student["input_size"][0]:
        raise ConfigError(
            f"train.distill.teacher = {cfg.teacher!r} takes {bundle.data_config['input_size'][0]} input channels, "
            f"the student {student['input_size'][0]}: distil between models of the same input channels"
        )
    model = bundle.model.requires_grad_(False).eval().to(memory_format=torch.channels_last)
    teacher = DistillationTeacher(model).eval()  # the wrapper too (it sets only the model it wraps)
    teacher.mean_kd = _channel_stats(bundle.data_config["mean"])  # the bundle's, not the timm default config's
    teacher.std_kd = _channel_stats(bundle.data_config["std"])
    distiller = Distiller(teacher, folder, (student, bundle.data_config), cfg)
    log.info(
        "distilling from %s (%s, input %s%s), alpha %g, temperature %g",
        folder,
        bundle.config.model_name,
        "x".join(map(str, bundle.data_config["input_size"][1:])),
        ", resized from the student's" if distiller.size else "",
        cfg.alpha,
        cfg.temperature,
    )
    return distiller
