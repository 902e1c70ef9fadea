"""The micro-batcher on its own: batching, the idle fast path, waiting for company under load, overload, timeouts,
a cancelled caller skipped, a failing forward pass answered to every caller, two models' images kept apart.

No test sleeps to let something happen: the forward pass waits on a `Gate` the test releases, so the test
decides when a batch is done, and the test waits for states (a queue depth, a pass begun), never for durations.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import numpy as np
import pytest

from posevit.serve.batcher import MicroBatcher, Overloaded, TimedOut
from tests.helpers.api import Gate

pytestmark = pytest.mark.timeout(60)


def image(i: int) -> np.ndarray:
    return np.full(3, i, np.float32)  # one "pixel" row per image; its answer is the row doubled


def doubled(pixels: np.ndarray) -> np.ndarray:
    return pixels * 2


class Recorded:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.abandoned = 0

    def on_batch(self, size: int, seconds: float) -> None:
        self.batches.append(size)

    def on_abandoned(self) -> None:
        self.abandoned += 1


@asynccontextmanager
async def batcher(
    forward: Callable[[np.ndarray], np.ndarray] = doubled, **options: float
) -> AsyncIterator[tuple[MicroBatcher, Gate, Recorded]]:
    """A started batcher whose forward passes wait on a (closed) Gate; released and stopped on the way out."""
    settings = {"max_batch_size": 8, "max_wait_ms": 0.0, "max_queue": 64, "timeout_s": 30.0, **options}
    gate, recorded = Gate(forward), Recorded()
    running = MicroBatcher(
        gate,
        int(settings["max_batch_size"]),
        settings["max_wait_ms"],
        int(settings["max_queue"]),
        settings["timeout_s"],
        on_batch=recorded.on_batch,
        on_abandoned=recorded.on_abandoned,
    )
    running.start()
    try:
        yield running, gate, recorded
    finally:
        gate.release()  # before stop(), which waits for the model thread
        await running.stop()


async def until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition()` holds (a state, not a duration)."""
    for _ in range(100_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def in_forward_pass(gate: Gate) -> None:
    assert await asyncio.to_thread(gate.entered.wait, 30), "no forward pass began"


def run(scenario: Callable[[], object]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))  # type: ignore[arg-type]


def test_waiting_images_go_as_one_batch_and_each_caller_gets_its_own_row():
    async def scenario():
        async with batcher(max_batch_size=3, max_wait_ms=60_000) as (b, gate, recorded):
            first = asyncio.ensure_future(b.predict(image(0)))
            await in_forward_pass(gate)
            rest = [asyncio.ensure_future(b.predict(image(i))) for i in (1, 2, 3)]
            await until(lambda: b.queue_depth == 3)
            gate.release()
            answers = await asyncio.gather(first, *rest)
            assert gate.batch_sizes == recorded.batches == [1, 3]  # a full batch goes without waiting max_wait_ms
            for i, answer in enumerate(answers):
                np.testing.assert_array_equal(answer, image(i) * 2)

    run(scenario)


def test_images_queued_for_two_models_never_share_a_batch_and_keep_their_order():
    """What a swap relies on: an image runs on the forward pass it was queued for, and a batch holds one model's."""

    def tripled(pixels: np.ndarray) -> np.ndarray:
        return pixels * 3

    async def scenario():
        async with batcher(max_batch_size=8, max_wait_ms=0) as (b, gate, recorded):
            first = asyncio.ensure_future(b.predict(image(0)))
            await in_forward_pass(gate)
            old = [asyncio.ensure_future(b.predict(image(i))) for i in (1, 3)]
            new = [asyncio.ensure_future(b.predict(image(i), tripled)) for i in (2, 4)]  # interleaved in the queue
            await until(lambda: b.queue_depth == 4)
            gate.release()
            answers = await asyncio.gather(first, *old, *new)
            assert recorded.batches == [1, 2, 2] and gate.batch_sizes == [1, 2]  # the gated model: its two batches
            for answer, (i, factor) in zip(answers, [(0, 2), (1, 2), (3, 2), (2, 3), (4, 3)], strict=True):
                np.testing.assert_array_equal(answer, image(i) * factor)

    run(scenario)


def test_a_lone_image_on_an_idle_batcher_goes_at_once():
    async def scenario():
        async with batcher(max_wait_ms=60_000) as (b, gate, recorded):  # a minute of max_wait: never paid here
            gate.release()
            for i in range(3):
                np.testing.assert_array_equal(await asyncio.wait_for(b.predict(image(i)), 10), image(i) * 2)
            assert recorded.batches == [1, 1, 1]

    run(scenario)


def test_under_load_a_lone_image_waits_for_company():
    async def scenario():
        async with batcher(max_batch_size=2, max_wait_ms=60_000) as (b, gate, recorded):
            first = asyncio.ensure_future(b.predict(image(0)))
            await in_forward_pass(gate)
            pair = [asyncio.ensure_future(b.predict(image(i))) for i in (1, 2)]
            await until(lambda: b.queue_depth == 2)
            gate.release()
            await asyncio.gather(first, *pair)
            assert recorded.batches == [1, 2]  # the last batch held two: the batcher now counts as busy
            lone = asyncio.ensure_future(b.predict(image(3)))
            for _ in range(1000):
                await asyncio.sleep(0)
            assert not lone.done() and recorded.batches == [1, 2]  # waiting (up to max_wait_ms) for another
            company = asyncio.ensure_future(b.predict(image(4)))
            answers = await asyncio.gather(lone, company)
            assert recorded.batches == [1, 2, 2]
            np.testing.assert_array_equal(answers[1], image(4) * 2)

    run(scenario)


def test_a_full_queue_refuses_at_once_and_keeps_serving():
    async def scenario():
        async with batcher(max_queue=2) as (b, gate, recorded):
            first = asyncio.ensure_future(b.predict(image(0)))
            await in_forward_pass(gate)
            queued = [asyncio.ensure_future(b.predict(image(i))) for i in (1, 2)]
            await until(lambda: b.queue_depth == 2)
            with pytest.raises(Overloaded, match="2 images are already waiting"):
                await b.predict(image(3))
            assert b.queue_depth == 2  # bounded: refused callers take no memory
            gate.release()
            assert len(await asyncio.gather(first, *queued)) == 3
            np.testing.assert_array_equal(await b.predict(image(4)), image(4) * 2)

    run(scenario)


def test_callers_not_answered_in_time_time_out_and_their_images_never_run():
    async def scenario():
        async with batcher(timeout_s=0.01) as (b, gate, recorded):
            in_pass = asyncio.ensure_future(b.predict(image(0)))
            await in_forward_pass(gate)  # this one's pass cannot finish: the gate is closed
            queued = asyncio.ensure_future(b.predict(image(1)))
            outcomes = await asyncio.gather(in_pass, queued, return_exceptions=True)
            assert [type(outcome) for outcome in outcomes] == [TimedOut, TimedOut]
            assert "serve.timeout_s" in str(outcomes[0])
            b.timeout = 30.0  # the next caller has all the time it needs
            gate.release()
            np.testing.assert_array_equal(await b.predict(image(2)), image(2) * 2)
            assert gate.batch_sizes == [1, 1] and recorded.abandoned == 1  # the queued one was skipped

    run(scenario)


def test_a_cancelled_caller_is_skipped():
    async def scenario():
        async with batcher() as (b, gate, recorded):
            first = asyncio.ensure_future(b.predict(image(0)))
            await in_forward_pass(gate)
            leaving = asyncio.ensure_future(b.predict(image(1)))
            await until(lambda: b.queue_depth == 1)
            leaving.cancel()  # what a client disconnect does to its request's task
            with pytest.raises(asyncio.CancelledError):
                await leaving
            gate.release()
            await first
            np.testing.assert_array_equal(await b.predict(image(2)), image(2) * 2)
            assert gate.batch_sizes == [1, 1] and recorded.abandoned == 1

    run(scenario)


def test_a_failing_forward_pass_is_answered_to_every_caller_and_the_batcher_goes_on(caplog):
    def breaks_on_three(pixels: np.ndarray) -> np.ndarray:
        if len(pixels) == 3:
            raise RuntimeError("the model broke")
        return pixels * 2

    async def scenario():
        async with batcher(breaks_on_three) as (b, gate, recorded):
            first = asyncio.ensure_future(b.predict(image(0)))
            await in_forward_pass(gate)
            doomed = [asyncio.ensure_future(b.predict(image(i))) for i in (1, 2, 3)]
            await until(lambda: b.queue_depth == 3)
            gate.release()
            await first
            outcomes = await asyncio.gather(*doomed, return_exceptions=True)
            assert all(isinstance(o, RuntimeError) and str(o) == "the model broke" for o in outcomes), outcomes
            np.testing.assert_array_equal(await b.predict(image(4)), image(4) * 2)
            assert gate.batch_sizes == [1, 3, 1] and recorded.batches == [1, 1]  # the failed pass is not counted

    caplog.set_level(logging.ERROR)
    run(scenario)
    assert "forward pass of a batch of 3 failed" in caplog.text


def test_with_two_streams_two_batches_are_in_their_forward_pass_at_once():
    """A predictor that runs two passes at once (`Predictor.streams`) gets a second batch while the first is held;
    each pass here waits for the other (a two-party barrier), so the test ends only if both run together."""
    both_in_pass = threading.Barrier(2, timeout=30)
    begun = threading.Event()

    def meets_the_other(pixels: np.ndarray) -> np.ndarray:
        begun.set()
        both_in_pass.wait()
        return pixels * 2

    async def scenario():
        recorded = Recorded()
        b = MicroBatcher(meets_the_other, 8, 0.0, 64, 30.0, on_batch=recorded.on_batch, streams=2)
        b.start()
        try:
            first = asyncio.ensure_future(b.predict(image(0)))
            assert await asyncio.to_thread(begun.wait, 30)  # the first image is in one stream's pass, held there
            second = asyncio.ensure_future(b.predict(image(1)))
            answers = await asyncio.gather(first, second)
        finally:
            await b.stop()
        assert recorded.batches == [1, 1]  # two passes, not one batch of two
        for i, answer in enumerate(answers):
            np.testing.assert_array_equal(answer, image(i) * 2)

    run(scenario)


def test_with_one_stream_the_next_batch_waits_for_the_pass_in_flight():
    async def scenario():
        async with batcher(max_batch_size=8, max_wait_ms=0) as (b, gate, recorded):
            first = asyncio.ensure_future(b.predict(image(0)))
            await in_forward_pass(gate)
            second = asyncio.ensure_future(b.predict(image(1)))
            await until(lambda: b.queue_depth == 1)
            for _ in range(100):  # however long the loop runs, the queued image stays queued
                await asyncio.sleep(0)
            assert b.queue_depth == 1 and gate.batch_sizes == [1]
            gate.release()
            await asyncio.gather(first, second)
            assert gate.batch_sizes == [1, 1]

    run(scenario)
