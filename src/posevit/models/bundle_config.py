"""A bundle's `config.json`, typed: everything about a model but its weights, readable without PyTorch.

The ONNX serving image reads labels, data config and temperature from here and never imports torch
or timm; `posevit.models.bundle` adds the weights and the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from typing_extensions import TypedDict  # pydantic validates typing_extensions' TypedDict on Python 3.11

from posevit.core.errors import PosevitError

BUNDLE_FORMAT = "posevit-bundle/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class BundleError(PosevitError):
    """A model bundle is missing, incomplete or corrupt."""


class DataConfig(TypedDict):
    """timm's data config of a model, as JSON (key order as timm resolves it)."""

    input_size: list[int]  # [channels, height, width]
    interpolation: str
    mean: list[float]
    std: list[float]
    crop_pct: float
    crop_mode: str


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
