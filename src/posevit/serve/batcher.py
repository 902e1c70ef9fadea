"""One micro-batcher in front of the model: every request, page or API, waits here for a forward pass.

Requests queue up; one task gathers up to `batch_limit` images, waiting at most
`max_wait_ms` after the first arrived (only under load: a lone request on an idle server
goes at once), and hands the stack to the single thread that owns the model. Each caller
gets its own row back. The limit starts at `max_batch_size`; the service lowers it to what the
warm-up chose (`serve.batch_limit`, measured by `serve.batch_limit.pick_batch_limit`). The queue is
bounded: past `max_queue` waiting images a request is refused at once (the server answers 503)
instead of growing memory and latency; a request not answered within `timeout_s` gets an error
(504), and a caller that goes away (a client disconnect) is dropped from its batch.

A predictor that runs several forward passes at once (`Predictor.streams`, e.g. inference streams on
separate cores) gets that many batches in flight (`streams`): the next batch is gathered as soon as one
stream is free. With one stream (torch, ONNX Runtime) a batch is gathered only once the previous pass is done.

Each image waits for the forward pass it was queued for (`predict(..., forward=)`; by default the batcher's
`forward` at the time it was queued), and a batch only ever holds images of one forward pass. So swapping the
model (`serve.follow`) is just queueing new images for the new one: the images already waiting still run on the
model they were decoded for, in their own batches, and no batch mixes two versions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from posevit.core.errors import PosevitError

log = logging.getLogger(__name__)

T = TypeVar("T")
Forward = Callable[[np.ndarray], np.ndarray]  # (N, C, H, W) pixels -> (N, classes) probabilities


class Overloaded(PosevitError):
    """The queue is full: the caller should retry later (HTTP 503 with Retry-After)."""


class TimedOut(PosevitError):
    """No answer within the configured time (HTTP 504)."""


@dataclass
class _Waiting:
    pixels: np.ndarray  # (C, H, W)
    future: asyncio.Future[np.ndarray]
    forward: Forward  # the model this image was decoded for, and runs on
    since: float = field(default_factory=time.monotonic)


class MicroBatcher:
    def __init__(
        self,
        forward: Forward,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        timeout_s: float,
        on_batch: Callable[[int, float], None] | None = None,
        on_abandoned: Callable[[], None] | None = None,
        streams: int = 1,
    ) -> None:
        self.forward, self.max_queue = forward, max_queue
        self.streams = streams  # forward passes in flight at once; a swapped-in model may lower it
        self.max_streams = streams  # the model threads there are, one per stream
        self.batch_limit = max_batch_size  # most images per forward pass; lowered by the warm-up's choice
        self.max_wait, self.timeout = max_wait_ms / 1000, timeout_s
        self.on_batch = on_batch  # (batch size, seconds) after every forward pass
        self.on_abandoned = on_abandoned  # a caller left (timeout, disconnect) before its batch ran
        self._waiting: deque[_Waiting] = deque()
        self._arrived = asyncio.Event()
        # The model's own threads, one per stream: with one, forward passes never overlap; either way the event
        # loop never blocks on them.
        self._model_thread = ThreadPoolExecutor(max_workers=streams, thread_name_prefix="posevit-model")
        self._task: asyncio.Task[None] | None = None
        self._passes: set[asyncio.Task[None]] = set()  # batches in their forward pass
        self._pass_done = asyncio.Event()
        self._last_batch_size = 0

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="posevit-batcher")

    async def stop(self) -> None:
        for task in [self._task, *self._passes]:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        for waiting in self._waiting:
            waiting.future.cancel()
        self._model_thread.shutdown(wait=True)

    async def run_on_model_thread(self, work: Callable[[], T]) -> T:
        """Run other model work (a gradient heat map) on the model's own thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, work)

    async def predict(self, pixels: np.ndarray, forward: Forward | None = None) -> np.ndarray:
        """This image's probabilities from `forward` (else the batcher's own), computed in a batch with whatever else
        is waiting for the same forward pass."""
        if len(self._waiting) >= self.max_queue:
            raise Overloaded(f"{len(self._waiting)} images are already waiting (server.max_queue); retry shortly")
        waiting = _Waiting(pixels, asyncio.get_running_loop().create_future(), forward or self.forward)
        self._waiting.append(waiting)
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(waiting.future), self.timeout)
        except TimeoutError:
            raise TimedOut(f"no answer within {self.timeout:g} s (serve.timeout_s); the server is overloaded") from None
        finally:
            waiting.future.cancel()  # a no-op once answered; else its batch skips it (timeout, disconnect)

    async def _serve(self) -> None:
        while True:
            if not self._waiting:
                self._arrived.clear()
                await self._arrived.wait()
            while len(self._passes) >= self.streams:  # every stream busy: images queue up meanwhile
                self._pass_done.clear()
                await self._pass_done.wait()
            # Wait for company only under load: after a lone image the server looks idle, and a single
            # client should not pay max_wait_ms on every request.
            wait = self.max_wait if self._last_batch_size > 1 or len(self._waiting) > 1 else 0.0
            deadline = self._waiting[0].since + wait
            while len(self._waiting) < self.batch_limit and (left := deadline - time.monotonic()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except TimeoutError:
                    break
            self._dispatch(self._next_batch())  # no batch kept here: a swapped-out model is freed once answered

    def _dispatch(self, batch: list[_Waiting]) -> None:
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._run(batch), name="posevit-forward")
        self._passes.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._passes.discard(task)
        self._pass_done.set()

    async def _run(self, batch: list[_Waiting]) -> None:
        started = time.perf_counter()
        try:
            probabilities = await asyncio.get_running_loop().run_in_executor(
                self._model_thread, batch[0].forward, np.stack([w.pixels for w in batch])
            )
        except Exception as exc:  # the callers get it; the batcher keeps serving
            log.exception("forward pass of a batch of %d failed", len(batch))
            for waiting in batch:
                if not waiting.future.done():
                    waiting.future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        self._last_batch_size = len(batch)
        if self.on_batch is not None:
            self.on_batch(len(batch), seconds)
        for waiting, row in zip(batch, probabilities, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(row)

    def _next_batch(self) -> list[_Waiting]:
        """The oldest image and up to `batch_limit` - 1 more queued for the same forward pass, in order; images
        for another one (a model swapped in meanwhile) keep their places for the next batch."""
        batch: list[_Waiting] = []
        other: list[_Waiting] = []
        while self._waiting and len(batch) < self.batch_limit:
            waiting = self._waiting.popleft()
            if waiting.future.done():
                if self.on_abandoned is not None:
                    self.on_abandoned()
            elif not batch or waiting.forward == batch[0].forward:  # == : bound methods of one model are equal
                batch.append(waiting)
            else:
                other.append(waiting)
        self._waiting.extendleft(reversed(other))
        return batch
