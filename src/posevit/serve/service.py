"""What the page and the API share: upload limits, decoding off the event loop, the micro-batcher, the model card.

Every classification, whoever asks, goes through `InferenceService.classify`: bytes are checked
against the size limit, decoded and transformed in a worker thread (the pixel limit is read
from the header before decoding), then the image waits in the batcher for a forward pass.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from posevit.core.config import ServeConfig
from posevit.core.errors import ImageError, ImageTooLarge
from posevit.data.images import decode_rgb
from posevit.infer.model_source import ServedModel
from posevit.infer.predictor import Prediction, Predictor
from posevit.serve.batcher import MicroBatcher
from posevit.serve.telemetry import ServeMetrics


@dataclass(frozen=True)
class Limits:
    max_pixels: int = 40_000_000  # a 40-megapixel photo decodes; a decompression bomb never does
    max_file_bytes: int = 20 * 1024 * 1024

    @classmethod
    def of(cls, settings: ServeConfig) -> Limits:
        return cls(max_pixels=settings.max_pixels, max_file_bytes=int(settings.max_file_mb * 2**20))


class InferenceService:
    def __init__(
        self, predictor: Predictor, served: ServedModel, settings: ServeConfig, metrics: ServeMetrics | None = None
    ) -> None:
        self.predictor, self.served, self.settings = predictor, served, settings
        self.metrics = metrics or ServeMetrics()
        self.limits = Limits.of(settings)
        self.batcher = MicroBatcher(
            predictor.forward,
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.max_queue,
            settings.timeout_s,
            on_batch=self.metrics.observe_batch,
            on_abandoned=self.metrics.abandoned.inc,
        )
        self.ready = False

    async def start(self) -> None:
        """Start the batcher and warm the model up (first passes allocate and pick kernels); then ready."""
        self.batcher.start()
        blank = np.zeros((min(4, self.settings.max_batch_size), 3, *self.predictor.input_size), np.float32)
        for _ in range(2):
            await self.batcher.run_on_model_thread(lambda: self.predictor.forward(blank))
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        await self.batcher.stop()

    def check_size(self, size: int) -> None:
        if size == 0:
            raise ImageError("the file is empty")
        if size > self.limits.max_file_bytes:
            raise ImageTooLarge(
                f"the file is {size / 2**20:.1f} MB; the limit is "
                f"{self.limits.max_file_bytes / 2**20:g} MB (serve.max_file_mb)"
            )

    def _decode(self, data: bytes) -> tuple[Image.Image, np.ndarray]:
        image = decode_rgb(data, self.limits.max_pixels, limit_name="serve.max_pixels")
        return image, self.predictor.preprocess(image)

    async def classify(self, data: bytes) -> tuple[Image.Image, Prediction]:
        """Decode `data` off the event loop, then classify it in the next batch (ImageError if it is no image).

        Returns the decoded image (upright RGB, as the model saw it before the transform) beside its
        prediction, whose `seconds` are the wait for the batch and the forward pass.
        """
        self.check_size(len(data))
        image, pixels = await asyncio.to_thread(self._decode, data)
        started = time.perf_counter()
        self.metrics.queue_depth.set(self.batcher.queue_depth + 1)
        try:
            row = await self.batcher.predict(pixels)
        finally:
            self.metrics.queue_depth.set(self.batcher.queue_depth)
        probabilities = dict(zip(self.predictor.labels, row.tolist(), strict=True))
        return image, Prediction(probabilities, time.perf_counter() - started)

    async def heat_map_overlay(self, image: Image.Image, label: str) -> Image.Image:
        """Where the model looked, over the crop it saw (a gradient pass, on the model's own thread)."""
        heat = await self.batcher.run_on_model_thread(lambda: self.predictor.heat_map(image, label))
        return await asyncio.to_thread(self.predictor.overlay, image, heat)

    def model_card(self) -> dict[str, Any]:
        config = self.predictor.config
        return {
            "name": config.model_name,
            "version": self.served.version,
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
            "batching": {
                "max_batch_size": self.settings.max_batch_size,
                "max_wait_ms": self.settings.max_wait_ms,
                "max_queue": self.settings.max_queue,
            },
        }
