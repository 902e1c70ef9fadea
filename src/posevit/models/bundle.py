"""The model bundle: `model.safetensors` + `config.json`, and the one function that loads it.

Everything a consumer needs to rebuild the model and its eval transform is plain JSON, typed
by `BundleConfig`: the timm model name, the labels in order, timm's data config. No pickles.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from torch import nn
from typing_extensions import TypedDict  # pydantic validates typing_extensions' TypedDict on Python 3.11

from posevit.core.errors import PosevitError
from posevit.core.paths import MODELS_DIR
from posevit.models.transforms import DataConfig, eval_transform

BUNDLE_FORMAT = "posevit-bundle/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class BundleError(PosevitError):
    """A model bundle is missing, incomplete or corrupt."""


class TrainingSummary(TypedDict):
    best_val_acc: float
    best_epoch: int  # 1-based
    epochs: int


class BundleConfig(BaseModel):
    """`config.json` of a bundle. Field order is the file's key order (its bytes name the registry version)."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    format: str = BUNDLE_FORMAT
    model_name: str
    labels: list[str]
    data_config: DataConfig
    freeze_blocks: int | None = None
    ema_decay: float | None = None  # set when the weights are an exponential moving average (train.ema_decay)
    temperature: float | None = None  # fitted on the validation split: probabilities = softmax(logits / T)
    params: dict[str, Any] | None = None  # the model/train/trainer config it was trained with
    metrics: TrainingSummary | None = None  # no timings: the bundle's bytes name its registry version
    versions: dict[str, str] | None = None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True) + "\n"


@dataclass
class Bundle:
    model: nn.Module  # in eval mode
    config: BundleConfig

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    @property
    def data_config(self) -> DataConfig:
        return self.config.data_config

    @property
    def temperature(self) -> float:
        """What the logits are divided by before the softmax (1 for a bundle without calibration)."""
        return self.config.temperature or 1.0

    def eval_transform(self):
        return eval_transform(self.data_config)


def save_bundle(directory: Path, model: nn.Module, config: BundleConfig) -> None:
    """Write weights and config beside `directory`, then swap it in: never half a bundle.

    Anything else the directory held (sub-folders included) goes with the old bundle.
    """
    staging = directory.with_name(directory.name + ".partial")
    retired = directory.with_name(directory.name + ".old")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    safetensors.torch.save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
    (staging / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    shutil.rmtree(retired, ignore_errors=True)
    if directory.exists():
        directory.rename(retired)
    staging.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)


def read_bundle_config(directory: Path) -> BundleConfig:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise BundleError(
            f"{path} not found: {directory} is not a model bundle (run the train stage: `dvc repro train`)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is corrupt: {exc}") from None
    found = raw.get("format") if isinstance(raw, dict) else None
    if found != BUNDLE_FORMAT:
        raise BundleError(f"{path}: format {found!r}, expected {BUNDLE_FORMAT!r}")
    try:
        return BundleConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise BundleError(f"{path} is corrupt: {problems}") from None


def load_bundle(directory: Path = MODELS_DIR, device: str | torch.device = "cpu") -> Bundle:
    """Rebuild the model of a bundle with its trained weights, in eval mode, on `device`."""
    directory = Path(directory)
    config = read_bundle_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{weights} not found: the bundle is incomplete")
    model = timm.create_model(config.model_name, pretrained=False, num_classes=len(config.labels))
    try:
        state = safetensors.torch.load_file(str(weights), device="cpu")
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, safetensors.SafetensorError) as exc:
        raise BundleError(f"{weights} is corrupt or does not match {config.model_name}: {exc}") from None
    return Bundle(model=model.to(device).eval(), config=config)
