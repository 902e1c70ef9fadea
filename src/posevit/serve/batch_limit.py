"""How many images the batcher gathers for one forward pass: measured at warm-up, or set (`serve.batch_limit`).

Batching pays only where a batch costs less per image than images one by one. On a 2-core CPU it often does
not: ONNX Runtime's dynamic int8 runs batch 1 faster per image than batch 32, and a batch of b always makes its
first image wait for the other b - 1. So at warm-up (at start, and for each version `serve.follow` swaps in) the
backend is timed at batch 1, 2, 4, ... up to `serve.max_batch_size`, and the limit is the smallest batch whose
time per image is within `NEAR_BEST` of the best one measured and beats batch 1's by `MARGIN` (else 1).

The measurement is bounded: one untimed pass per size (it allocates) and `REPEATS` timed ones, the best kept,
and no size whose estimated cost (the last size's pass, scaled) would overrun `BUDGET_S` (`SWAP_BUDGET_S` for a
version about to be swapped in). `choose_batch_limit`
is the decision alone, a pure function of the timings (tests/test_batch_limit.py feeds it made-up ones).

Streams (`serve.streams`): a predictor that can run several forward passes at once (the OpenVINO backends, whose
THROUGHPUT hint splits the cores into streams) lists the stream counts it offers (`Predictor.stream_options`).
With auto, each is compiled in turn and its batch sizes timed the same way, that many passes at once, and the pair
kept is the one whose pass is shortest among those within `NEAR_BEST` of the cheapest per image and `MARGIN` below
one stream at batch 1 (`choose_streams_and_batch`): ViT-B/16 int8 on 2 cores costs about the same per image as
2 streams at batch 1 and as 1 stream at batch 8, and the first answers each request in one 110 ms pass, the second
in one 450 ms pass. Once streams are chosen, a pass with no other in flight runs on every core
(`Predictor.lone_passes_on_every_core`), so a lone request keeps one stream's latency. The torch and ONNX Runtime
backends offer one stream (one pass uses every core).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

import numpy as np

MARGIN = 0.10  # a batch (or a stream) must be 10% cheaper per image to be worth it (a shared VM's noise is ~5%)
# ... and the limit is the smallest size within 5% (the noise) of the cheapest: under load a larger batch is more
# images per second (ViT-B/16 int8 in OpenVINO, 2 cores: 59 ms per image at 2, 55 at 4, 54 at 8).
NEAR_BEST = 0.05
BUDGET_S = 5.0  # at most about this long timing batch sizes at warm-up, per stream count (ViT-B/16: batch 1 to 4 or 8)
SWAP_BUDGET_S = 1.0  # before a swap (serve.follow): the old model serves meanwhile, and a swap should be quick
REPEATS = 2  # timed passes per batch size, after one untimed

Forward = Callable[[np.ndarray], np.ndarray]
Setting = int | Literal["auto"]
Pair = tuple[int, int]  # (streams, batch size)


class Batchable(Protocol):
    """What the warm-up needs of a predictor: its forward pass and the stream counts it can compile."""

    streams: int  # forward passes it runs at once now

    def forward(self, pixels: np.ndarray) -> np.ndarray: ...

    @property
    def stream_options(self) -> tuple[int, ...]: ...

    def use_streams(self, streams: int) -> None: ...

    def lone_passes_on_every_core(self) -> None: ...


@dataclass(frozen=True)
class BatchChoice:
    """The batch limit and streams in force, how they were chosen, and the timings behind them (the model card's
    `batching`)."""

    limit: int
    chosen_by: Literal["measured", "serve.batch_limit"]
    streams: int = 1  # forward passes the predictor runs at once
    seconds_by_size: Mapping[int, float] = field(default_factory=dict)  # best pass per batch size, at `streams`
    not_timed: tuple[int, ...] = ()  # sizes left out to keep within BUDGET_S
    streams_chosen_by: Literal["measured", "serve.streams", "backend"] = "backend"  # backend: it offers one
    # seconds per image under full load by (streams, batch size), where streams were measured (else empty)
    cost_by_streams: Mapping[Pair, float] = field(default_factory=dict)

    def card(self) -> dict[str, Any]:
        measured = "measured" in (self.chosen_by, self.streams_chosen_by)  # the rule's bounds, where it ran
        return {
            "batch_limit": self.limit,
            "batch_limit_chosen_by": self.chosen_by,
            "streams": self.streams,
            "streams_chosen_by": self.streams_chosen_by,
            "timings": [
                {
                    "batch_size": size,
                    "ms_per_batch": round(seconds * 1000, 3),
                    "ms_per_image": round(seconds * 1000 / size, 3),
                }
                for size, seconds in sorted(self.seconds_by_size.items())
            ],
            "stream_timings": [
                {"streams": streams, "batch_size": size, "ms_per_image": round(seconds * 1000, 3)}
                for (streams, size), seconds in sorted(self.cost_by_streams.items())
            ],
            "not_timed": list(self.not_timed),
            "margin": MARGIN if measured else None,
            "near_best": NEAR_BEST if measured else None,
        }


def candidate_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, ... below `max_batch_size`, then `max_batch_size` itself."""
    sizes = [2**power for power in range(max_batch_size.bit_length()) if 2**power < max_batch_size]
    return [*sizes, max_batch_size]


def choose_streams_and_batch(cost_per_image: Mapping[Pair, float], margin: float = MARGIN) -> Pair:
    """Of the (streams, batch) pairs whose time per image under full load is within `NEAR_BEST` of the cheapest and
    at least `margin` below the base's (one stream at the smallest batch measured), the one whose pass is shortest:
    streams x batch x time per image is how long a request's pass takes under load (fewer streams on a tie). The
    base when none pays. One stream alone: the smallest batch within `NEAR_BEST` of the cheapest."""
    base = (1, min(size for streams, size in cost_per_image if streams == 1))
    threshold = min(min(cost_per_image.values()) * (1 + NEAR_BEST), cost_per_image[base] * (1 - margin))
    paying = [pair for pair, cost in cost_per_image.items() if cost <= threshold]
    return min(paying, key=lambda pair: (pair[0] * pair[1] * cost_per_image[pair], pair), default=base)


def choose_batch_limit(seconds_by_size: Mapping[int, float], margin: float = MARGIN) -> int:
    """The smallest batch size whose time per image is within `NEAR_BEST` of the best measured one and at least
    `margin` below batch 1's; 1 when no batch pays that much (or batch 1 was not measured)."""
    if 1 not in seconds_by_size:
        return 1
    return choose_streams_and_batch({(1, size): seconds / size for size, seconds in seconds_by_size.items()}, margin)[1]


def concurrent(forward: Forward, streams: int, pool: ThreadPoolExecutor) -> Forward:
    """`forward` run `streams` times at once on the same batch (the load `streams` streams see), or as it is."""
    if streams == 1:
        return forward
    return lambda batch: list(pool.map(forward, [batch] * streams))[0]


def time_batch_sizes(
    forward: Forward,
    sample_shape: tuple[int, ...],
    max_batch_size: int,
    budget_s: float = BUDGET_S,
    repeats: int = REPEATS,
    clock: Callable[[], float] = time.perf_counter,
    sizes: Sequence[int] | None = None,
) -> tuple[dict[int, float], tuple[int, ...]]:
    """The best of `repeats` passes at each candidate size (after one untimed pass), and the sizes left out
    because their estimated cost would have overrun `budget_s`. The first size is always timed."""
    rng = np.random.default_rng(0)
    sizes = list(sizes or candidate_sizes(max_batch_size))
    seconds_by_size: dict[int, float] = {}
    started = clock()
    for index, size in enumerate(sizes):
        if seconds_by_size:
            last = max(seconds_by_size)
            estimate = seconds_by_size[last] * size / last * (repeats + 1)  # a pass grows about linearly
            if clock() - started + estimate > budget_s:
                return seconds_by_size, tuple(sizes[index:])
        batch = rng.standard_normal((size, *sample_shape), dtype=np.float32)  # made when needed: no more memory
        forward(batch)  # the first pass at a size allocates and picks kernels
        best = math.inf
        for _ in range(repeats):
            begun = clock()
            forward(batch)
            best = min(best, clock() - begun)
        seconds_by_size[size] = best
    return seconds_by_size, ()


def warm(forward: Forward, sample_shape: tuple[int, ...], batch_limit: int) -> None:
    """Two passes at a batch of up to 4: the first allocates and picks kernels, before traffic does."""
    batch = np.zeros((min(4, batch_limit), *sample_shape), np.float32)
    for _ in range(2):
        forward(batch)


def time_under_load(
    forward: Forward,
    sample_shape: tuple[int, ...],
    streams: int,
    max_batch_size: int,
    budget_s: float = BUDGET_S,
    sizes: Sequence[int] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[int, float], tuple[int, ...]]:
    """`time_batch_sizes` with `streams` passes at once, as a full server runs them: each size's seconds are a
    pass's share of its round (the round over `streams`), so seconds / size is the time per image under load."""
    with ThreadPoolExecutor(streams) as pool:
        rounds, not_timed = time_batch_sizes(
            concurrent(forward, streams, pool), sample_shape, max_batch_size, budget_s, clock=clock, sizes=sizes
        )
    return {size: seconds / streams for size, seconds in rounds.items()}, not_timed


def pick_batch_limit(
    forward: Forward,
    sample_shape: tuple[int, ...],
    max_batch_size: int,
    setting: Setting,
    streams: int = 1,
    budget_s: float = BUDGET_S,
    clock: Callable[[], float] = time.perf_counter,
) -> BatchChoice:
    """Warm the model up and choose its batch limit: `setting` when it is a number, else by timing it (with
    `streams` passes at once)."""
    if setting != "auto":
        warm(forward, sample_shape, setting)
        return BatchChoice(setting, "serve.batch_limit", streams)
    shares, not_timed = time_under_load(forward, sample_shape, streams, max_batch_size, budget_s, clock=clock)
    return BatchChoice(choose_batch_limit(shares), "measured", streams, shares, not_timed)


def pick_batching(
    model: Batchable,
    sample_shape: tuple[int, ...],
    max_batch_size: int,
    batch_setting: Setting,
    streams_setting: Setting,
    budget_s: float = BUDGET_S,
    clock: Callable[[], float] = time.perf_counter,
) -> BatchChoice:
    """The model compiled at the stream count it will run, warm, with its batch limit: each as set, or measured
    (every stream count the model offers timed for `budget_s` at most, then `choose_streams_and_batch`)."""
    if streams_setting != "auto" or len(model.stream_options) == 1:
        streams = model.stream_options[0] if streams_setting == "auto" else streams_setting
        if model.streams != streams:
            model.use_streams(streams)
        choice = pick_batch_limit(model.forward, sample_shape, max_batch_size, batch_setting, streams, budget_s, clock)
        return replace(choice, streams_chosen_by="backend" if streams_setting == "auto" else "serve.streams")
    timings: dict[int, tuple[dict[int, float], tuple[int, ...]]] = {}
    sizes = None if batch_setting == "auto" else [batch_setting]  # a set limit: timed at that size alone
    for streams in model.stream_options:
        if model.streams != streams:
            model.use_streams(streams)
        timings[streams] = time_under_load(model.forward, sample_shape, streams, max_batch_size, budget_s, sizes, clock)
    cost = {(streams, size): share / size for streams, (shares, _) in timings.items() for size, share in shares.items()}
    streams, limit = choose_streams_and_batch(cost)
    if model.streams != streams:
        model.use_streams(streams)
        warm(model.forward, sample_shape, limit)
    model.lone_passes_on_every_core()
    shares, not_timed = timings[streams]
    chosen_by: Literal["measured", "serve.batch_limit"] = "measured" if batch_setting == "auto" else "serve.batch_limit"
    return BatchChoice(limit, chosen_by, streams, shares, not_timed, "measured", cost)
