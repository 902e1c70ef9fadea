"""Shared fixtures: the project root, and small datasets built with the real `datasets` features."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

# Before `datasets` is imported (it reads these once): keep the tests' dataset caches out of
# the user's ~/.cache, and the hubs unreachable, as on CI.
_CACHE = Path(tempfile.mkdtemp(prefix="posevit-hf-cache-"))
os.environ["HF_HOME"] = str(_CACHE)
os.environ["HF_DATASETS_CACHE"] = str(_CACHE / "datasets")
os.environ["HF_HUB_OFFLINE"] = "1"

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from posevit.labels import ACTION_CLASSES  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def in_project_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


def png_bytes(colour: tuple[int, int, int] = (120, 40, 200), size: tuple[int, int] = (24, 16), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else None).save(buffer, format="PNG")
    return buffer.getvalue()


def action_dataset(labels: list[int], seed: int = 0) -> datasets.Dataset:
    """A dataset with the hub's features: `image` (Image) and `labels` (ClassLabel, 15 names)."""
    rng = np.random.default_rng(seed)
    images = [{"bytes": png_bytes(tuple(int(c) for c in rng.integers(0, 256, 3))), "path": None} for _ in labels]
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.ClassLabel(names=list(ACTION_CLASSES))})
    return datasets.Dataset.from_dict({"image": images, "labels": labels}, features=features)


def balanced_labels(per_class: int) -> list[int]:
    return [label for _ in range(per_class) for label in range(len(ACTION_CLASSES))]

