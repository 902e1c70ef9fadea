"""Real model bundles for tests, written as the train stage writes them."""

from __future__ import annotations

from pathlib import Path

import torch

from posevit.core.config import ModelConfig
from posevit.core.labels import ACTION_CLASSES
from posevit.models.bundle import save_bundle
from posevit.models.bundle_config import BundleConfig
from posevit.models.factory import create_model
from posevit.models.transforms import model_data_config


def tiny_bundle(directory: Path, seed: int = 0, head_scale: float = 1.0, temperature: float | None = None) -> Path:
    """A real (untrained) model bundle, as the train stage writes it; `seed` changes its weights.

    `head_scale` > 1 makes the random model decisive (images get clearly different answers).
    """
    torch.manual_seed(seed)
    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=len(ACTION_CLASSES)).eval()
    with torch.no_grad():
        model.get_submodule("head").weight.mul_(head_scale)
    save_bundle(
        directory,
        model,
        BundleConfig(
            model_name="vit_convstem_tiny",
            labels=list(ACTION_CLASSES),
            data_config=model_data_config(model),
            temperature=temperature,
        ),
    )
    return directory
