"""The API in this process: a real predictor on a tiny bundle behind `create_api`, driven by Starlette's
TestClient (its context runs the lifespan, so the batcher starts and the model warms up as in a server)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from starlette.testclient import TestClient

from posevit.core.config import ServeConfig
from posevit.infer.backends import load_predictor
from posevit.infer.model_source import ServedModel, from_folder
from posevit.infer.predictor import Predictor
from posevit.serve.api import ApiKeys, create_api
from posevit.serve.service import InferenceService
from tests.helpers.bundles import tiny_bundle
from tests.helpers.images import encode

KEYS = "key-one-5f2c9a,key-two-77d1e0"  # POSEVIT_API_KEYS for the tests


def photo(seed: int, size: tuple[int, int] = (120, 96)) -> bytes:
    """A distinct picture per seed (noise: a random model's answers differ between seeds)."""
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)), "PNG")


def tiny_model(root: Path) -> tuple[Predictor, ServedModel]:
    """A decisive random model (each test image gets its own answer) on the torch backend, which needs no export."""
    tiny_bundle(root / "models", seed=3, head_scale=40.0)
    served = from_folder(root / "models")
    return load_predictor(served, "cpu", "torch"), served


class Gate:
    """Wraps a forward pass so that it starts, says so (`entered`), and finishes only once the test `release`s it:
    the test, not the clock, decides when a batch is done."""

    def __init__(self, forward) -> None:
        self.forward, self.entered, self._open = forward, threading.Event(), threading.Event()
        self.batch_sizes: list[int] = []

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(pixels))
        self.entered.set()
        assert self._open.wait(60), "the test never released the forward pass"
        return self.forward(pixels)

    def release(self) -> None:
        self._open.set()


@contextmanager
def api_client(
    loaded: tuple[Predictor, ServedModel], keys: ApiKeys | None = None, gate: bool = False, **settings: object
) -> Iterator[tuple[TestClient, InferenceService]]:
    """A started API on the `loaded` model with these `serve` settings; with `gate`, its batches wait on a `Gate`
    (`service.model.forward`), released on the way out whatever happened."""
    predictor, served = loaded
    # Batches of up to max_batch_size unless a test asks for the measured limit (batch_limit="auto"): the API's tests
    # then batch the same on any machine, and start without timing the model (tests/test_batch_limit.py does).
    settings = {"batch_limit": settings.get("max_batch_size", ServeConfig().max_batch_size), **settings}
    service = InferenceService(predictor, served, ServeConfig.model_validate(settings))
    if gate:
        service.model.forward = Gate(predictor.forward)
    app = create_api(service, keys or ApiKeys([]))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        try:
            yield client, service
        finally:  # before the lifespan's shutdown, which waits for the model thread
            if isinstance(service.model.forward, Gate):
                service.model.forward.release()
