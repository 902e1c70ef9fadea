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



def tiny_bundle(directory: Path, seed: int = 0) -> Path:
    """A real (untrained) model bundle, as the train stage writes it; `seed` changes its weights."""
    import torch

    from posevit.bundle import save_bundle
    from posevit.config import ModelConfig
    from posevit.models.factory import create_model
    from posevit.transforms import model_data_config

    torch.manual_seed(seed)
    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=len(ACTION_CLASSES)).eval()
    save_bundle(directory, model, {"model_name": "vit_convstem_tiny", "labels": list(ACTION_CLASSES),
                                   "data_config": model_data_config(model)})
    return directory


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real SeaweedFS S3 server for the whole test session: free ports, temp dir, its own credentials."""
    from posevit.seaweed import LocalS3, free_port

    server = LocalS3(tmp_path_factory.mktemp("seaweedfs"), free_port())
    server.start()
    yield server
    server.stop()


def s3_environment(server) -> dict[str, str]:
    """Environment for boto3's standard chain to find the test server (and never EC2 metadata)."""
    return {**server.environment(), "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture
def aws_env(s3_server, monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_environment(s3_server).items():
        monkeypatch.setenv(name, value)
    return s3_server


_bucket_count = iter(range(10**6))


@pytest.fixture
def bucket(s3_server) -> str:
    """A fresh, empty bucket on the test server."""
    name = f"test-{os.getpid()}-{next(_bucket_count)}"
    s3_server.create_buckets([name])
    return name
