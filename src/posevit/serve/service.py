"""What the page and the API share: upload limits, decoding off the event loop, the micro-batcher, the model card.

Every classification, whoever asks, goes through `InferenceService.classify`: bytes are checked
against the size limit, decoded and transformed in a worker thread (the pixel limit is read
from the header before decoding; with serve.fast_decode a JPEG at reduced scale), then the image waits in the
batcher for a forward pass. The batch limit is the warm-up's choice (`serve.batch_limit`: timed when auto).

The model served is a `LoadedModel` (one version on the backend), which `swap` replaces (`serve.follow`,
`serve.follow.ModelFollower`). A request holds the model it started with from decoding to its answer, so a
swap never changes the version under a request, and the answer names the version that gave it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from posevit.core.config import ServeConfig
from posevit.core.errors import ImageError, ImageTooLarge
from posevit.infer.decode_pool import ImageReader, reader_for
from posevit.infer.model_source import ServedModel
from posevit.infer.predictor import Prediction, Predictor
from posevit.serve.batch_limit import BUDGET_S, BatchChoice, pick_batching
from posevit.serve.batcher import Forward, MicroBatcher
from posevit.serve.pointer import alias_of
from posevit.serve.telemetry import ServeMetrics


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 40_000_000  # a 40-megapixel photo decodes; a decompression bomb never does
    max_file_bytes: int = 20 * 1024 * 1024

    @classmethod
    def of(cls, settings: ServeConfig) -> Limits:
        return cls(max_pixels=settings.max_pixels, max_file_bytes=int(settings.max_file_mb * 2**20))


class Follower(Protocol):
    """What keeps the model up to date with its alias (`serve.follow.ModelFollower`), as the service drives it."""

    def start(self, interval_s: float) -> None: ...

    async def stop(self) -> None: ...

    def card(self) -> dict[str, Any]: ...


@dataclass(eq=False)
class LoadedModel:
    """One version on the backend, its batch limit (set by `warm_up`), and how many requests are using it
    (decoding, waiting or in its batch)."""

    predictor: Predictor
    served: ServedModel
    batching: BatchChoice | None = None  # None until warmed up
    fast_decode: bool = False  # decode and transform with the fast reader (serve.fast_decode)
    forward: Forward = field(init=False)  # the batcher runs this (a test may wrap it)
    reader: ImageReader = field(init=False)  # bytes -> image and pixels for this model
    in_flight: int = field(default=0, init=False)
    _idle: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    def __post_init__(self) -> None:
        self.forward = self.predictor.forward
        self.reader = reader_for(self.predictor.preprocess, self.predictor.config.data_config, self.fast_decode)
        self._idle.set()

    @property
    def version(self) -> str:
        return self.served.version

    @contextmanager
    def in_use(self) -> Iterator[LoadedModel]:
        self.in_flight += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def drained(self) -> None:
        """Returns once no request uses this model any more (at once if none does)."""
        await self._idle.wait()


@dataclass(frozen=True)
class ServedPrediction(Prediction):
    """A prediction and the version that made it (the model card's `version`; a swap may have happened since)."""

    model_name: str = ""
    version: str = ""


def warm_up(predictor: Predictor, settings: ServeConfig, budget_s: float = BUDGET_S) -> BatchChoice:
    """First passes allocate and pick kernels: run them before traffic does (at start, and before a swap), and
    choose the streams and batch limit for this model on this machine (`serve.streams`, `serve.batch_limit`:
    timed when auto, for `budget_s` per stream count)."""
    return pick_batching(
        predictor,
        (3, *predictor.input_size),
        settings.max_batch_size,
        settings.batch_limit,
        settings.streams,
        budget_s,
    )


def most_streams(predictor: Predictor, settings: ServeConfig) -> int:
    """The batcher's model threads: one per stream the warm-up may choose."""
    return max(predictor.stream_options) if settings.streams == "auto" else settings.streams


class InferenceService:
    def __init__(
        self, predictor: Predictor, served: ServedModel, settings: ServeConfig, metrics: ServeMetrics | None = None
    ) -> None:
        self.model = LoadedModel(predictor, served, fast_decode=settings.fast_decode)
        self.settings = settings
        self.metrics = metrics or ServeMetrics()
        self.limits = Limits.of(settings)
        self.alias = alias_of(settings.model) or ""  # the registry alias the model was named by, if any
        self.metrics.show_model(served.version, self.alias, predictor.backend)
        self.follower: Follower | None = None  # set by the server when serve.follow is on
        self.batcher = MicroBatcher(
            self.model.forward,
            settings.max_batch_size if settings.batch_limit == "auto" else settings.batch_limit,  # until warm
            settings.max_wait_ms,
            settings.max_queue,
            settings.timeout_s,
            on_batch=self.metrics.observe_batch,
            on_abandoned=self.metrics.abandoned.inc,
            streams=most_streams(predictor, settings),
        )
        self.ready = False

    @property
    def predictor(self) -> Predictor:
        """The predictor serving new requests now."""
        return self.model.predictor

    @property
    def served(self) -> ServedModel:
        return self.model.served

    async def start(self) -> None:
        """Start the batcher and warm the model up; then ready (and, with serve.follow, start following)."""
        self.batcher.start()
        model = self.model
        model.batching = await self.batcher.run_on_model_thread(lambda: warm_up(model.predictor, self.settings))
        self.batcher.batch_limit = model.batching.limit
        self.batcher.streams = model.batching.streams
        self.ready = True
        if self.follower is not None and self.settings.follow is not None:
            self.follower.start(self.settings.follow)

    async def stop(self) -> None:
        self.ready = False
        if self.follower is not None:
            await self.follower.stop()
        await self.batcher.stop()

    def swap(self, new: LoadedModel) -> LoadedModel:
        """Serve `new` (loaded and warm) from the next request on; returns the old one, which the requests that
        started on it still use until they are answered (`LoadedModel.drained`)."""
        old, self.model = self.model, new
        self.batcher.forward = new.forward  # the batcher's default too: nothing keeps the old model alive
        if new.batching is not None:  # chosen for the new model by its warm-up
            self.batcher.batch_limit = new.batching.limit
            self.batcher.streams = min(new.batching.streams, self.batcher.max_streams)
        self.metrics.show_model(new.version, self.alias, new.predictor.backend)
        return old

    def check_size(self, size: int) -> None:
        if size == 0:
            raise ImageError("the file is empty")
        if size > self.limits.max_file_bytes:
            raise ImageTooLarge(
                f"the file is {size / 2**20:.1f} MB; the limit is "
                f"{self.limits.max_file_bytes / 2**20:g} MB (serve.max_file_mb)"
            )

    def _decode(self, data: bytes, model: LoadedModel) -> tuple[Image.Image, np.ndarray]:
        return model.reader.read(data, self.limits.max_pixels, "serve.max_pixels")

    async def classify(self, data: bytes) -> tuple[Image.Image, ServedPrediction]:
        """Decode `data` off the event loop, then classify it in the next batch (ImageError if it is no image).

        Returns the decoded image (upright RGB, as the model saw it before the transform) beside its
        prediction, whose `seconds` are the wait for the batch and the forward pass. One model does it all,
        the one serving when the request came, even if another is swapped in meanwhile.
        """
        self.check_size(len(data))
        with self.model.in_use() as model:
            image, pixels = await asyncio.to_thread(self._decode, data, model)
            started = time.perf_counter()
            self.metrics.queue_depth.set(self.batcher.queue_depth + 1)
            try:
                row = await self.batcher.predict(pixels, model.forward)
            finally:
                self.metrics.queue_depth.set(self.batcher.queue_depth)
        probabilities = dict(zip(model.predictor.labels, row.tolist(), strict=True))
        seconds = time.perf_counter() - started
        return image, ServedPrediction(probabilities, seconds, model.predictor.model_name, model.version)

    async def heat_map_overlay(self, image: Image.Image, label: str) -> Image.Image:
        """Where the model looked, over the crop it saw (a gradient pass, on the model's own thread)."""
        with self.model.in_use() as model:
            heat = await self.batcher.run_on_model_thread(lambda: model.predictor.heat_map(image, label))
            return await asyncio.to_thread(model.predictor.overlay, image, heat)

    def model_card(self) -> dict[str, Any]:
        config = self.predictor.config
        return {
            "name": config.model_name,
            "version": self.served.version,
            "alias": self.alias or None,
            "source": self.served.source,
            "labels": self.predictor.labels,
            "test_metrics": self.served.metrics,
            "data_config": config.data_config,
            "freeze_blocks": config.freeze_blocks,
            "temperature": self.predictor.temperature,  # probabilities = softmax(logits / temperature)
            "ema_decay": config.ema_decay,
            "device": self.predictor.device,
            "backend": self.predictor.backend,
            "precision": self.predictor.precision,
            # OpenVINO int8 on auto: ms of one image per precision for the unquantized rest, the faster one runs
            "precision_timings_ms": self.predictor.precision_timings or None,
            "batching": {
                "max_batch_size": self.settings.max_batch_size,
                "max_wait_ms": self.settings.max_wait_ms,
                "max_queue": self.settings.max_queue,
                # the limit the batcher gathers up to, and the timings it was chosen by (None before warm-up)
                **(self.model.batching.card() if self.model.batching is not None else {"batch_limit": None}),
            },
            "decode": {"fast": self.settings.fast_decode, "draft_side": self.model.reader.draft_side},
            "follow": self.follower.card() if self.follower is not None else None,
        }
