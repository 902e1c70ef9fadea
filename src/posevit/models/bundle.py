"""The model bundle: `model.safetensors` + `config.json`, and the one function that loads it.

Everything a consumer needs to rebuild the model and its eval transform is plain JSON, typed
by `BundleConfig`: the timm model name, the labels in order, timm's data config. No pickles.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
import timm
import torch
from torch import nn

from posevit.core.paths import MODELS_DIR
from posevit.models import convstem_vit  # noqa: F401  (registers vit_convstem_tiny with timm)
from posevit.models.bundle_config import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    BundleConfig,
    BundleError,
    DataConfig,
    read_bundle_config,
)
from posevit.models.transforms import eval_transform


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


def load_bundle(directory: Path = MODELS_DIR, device: str | torch.device = "cpu") -> Bundle:
    """Rebuild the model of a bundle with its trained weights, in eval mode, on `device`."""
    directory = Path(directory)
    config = read_bundle_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise BundleError(f"{weights} not found: the bundle is incomplete")
    # The bundle's input size is the one the model was built for (model.img_size may differ from timm's default).
    model = timm.create_model(
        config.model_name,
        pretrained=False,
        num_classes=len(config.labels),
        pretrained_cfg_overlay={"input_size": tuple(config.data_config["input_size"])},
    )
    try:
        state = safetensors.torch.load_file(str(weights), device="cpu")
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, safetensors.SafetensorError) as exc:
        raise BundleError(f"{weights} is corrupt or does not match {config.model_name}: {exc}") from None
    return Bundle(model=model.to(device).eval(), config=config)
