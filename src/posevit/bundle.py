"""The model bundle: `model.safetensors` + `config.json`, and the one function that loads it.

Everything a consumer needs to rebuild the model and its eval transform is plain JSON:
the timm model name, the labels in order, timm's data config. No pickles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import timm
import torch
from torch import nn

import posevit.models  # noqa: F401  (registers the project's own timm models)
from posevit.errors import PosevitError
from posevit.transforms import eval_transform

BUNDLE_FORMAT = "posevit-bundle/1"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MODELS_DIR = Path("models")


class BundleError(PosevitError):
    """A model bundle is missing, incomplete or corrupt."""


@dataclass
class Bundle:
    model: nn.Module  # in eval mode
    config: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return self.config["labels"]

    @property
    def data_config(self) -> dict[str, Any]:
        return self.config["data_config"]

    def eval_transform(self):
        return eval_transform(self.data_config)


def save_bundle(directory: Path, model: nn.Module, config: dict[str, Any]) -> None:
    """Write weights and config side by side, then swap the directory in (never half a bundle)."""
    staging = directory.with_name(directory.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    safetensors.torch.save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
    (staging / CONFIG_FILE).write_text(json.dumps({"format": BUNDLE_FORMAT, **config}, indent=2) + "\n", encoding="utf-8")
    if directory.exists():
        for old in directory.iterdir():
            old.unlink()
        directory.rmdir()
    staging.rename(directory)


def read_bundle_config(directory: Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise BundleError(f"{path} not found: {directory} is not a model bundle (run the train stage: `dvc repro train`)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is corrupt: {exc}") from None
    if config.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: format {config.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    return config


def load_bundle(directory: Path = MODELS_DIR, device: str | torch.device = "cpu") -> Bundle:
    """Rebuild the model of a bundle with its trained weights, in eval mode, on `device`."""
    directory = Path(directory)
    config = read_bundle_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{weights} not found: the bundle is incomplete")
    model = timm.create_model(config["model_name"], pretrained=False, num_classes=len(config["labels"]))
    try:
        state = safetensors.torch.load_file(str(weights), device="cpu")
        model.load_state_dict(state, strict=True)
    except Exception as exc:
        raise BundleError(f"{weights} is corrupt or does not match {config['model_name']}: {exc}") from None
    return Bundle(model=model.to(device).eval(), config=config)
