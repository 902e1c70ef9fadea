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

Streams: a predictor says how many forward passes it runs at once (`Predictor.streams`, 1 for the torch and
ONNX Runtime backends, whose one pass already uses every core); the model card reports it beside the limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

MARGIN = 0.10  # a batch must be 10% cheaper per image to be worth the wait (a shared VM's noise is ~5%)
# ... and the limit is the smallest size within 5% (the noise) of the cheapest: under load a larger batch is more
# images per second (ViT-B/16 int8 in OpenVINO, 2 cores: 59 ms per image at 2, 55 at 4, 54 at 8).
NEAR_BEST = 0.05
BUDGET_S = 5.0  # at most about this long timing batch sizes at warm-up (ViT-B/16 on 2 cores: batch 1 to 4 or 8)
SWAP_BUDGET_S = 1.0  # before a swap (serve.follow): the old model serves meanwhile, and a swap should be quick
REPEATS = 2  # timed passes per batch size, after one untimed

Forward = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class BatchChoice:
    """The batch limit in force, how it was chosen, and the timings behind it (the model card's `batching`)."""

    limit: int
    chosen_by: Literal["measured", "serve.batch_limit"]
    streams: int = 1  # forward passes the predictor runs at once
    seconds_by_size: Mapping[int, float] = field(default_factory=dict)  # best pass per batch size measured
    not_timed: tuple[int, ...] = ()  # sizes left out to keep within BUDGET_S

    def card(self) -> dict[str, Any]:
        return {
            "batch_limit": self.limit,
            "batch_limit_chosen_by": self.chosen_by,
            "streams": self.streams,
            "timings": [
                {
                    "batch_size": size,
                    "ms_per_batch": round(seconds * 1000, 3),
                    "ms_per_image": round(seconds * 1000 / size, 3),
                }
                for size, seconds in sorted(self.seconds_by_size.items())
            ],
            "not_timed": list(self.not_timed),
            "margin": MARGIN if self.chosen_by == "measured" else None,
            "near_best": NEAR_BEST if self.chosen_by == "measured" else None,
        }


def candidate_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, ... below `max_batch_size`, then `max_batch_size` itself."""
    sizes = [2**power for power in range(max_batch_size.bit_length()) if 2**power < max_batch_size]
    return [*sizes, max_batch_size]


def choose_batch_limit(seconds_by_size: Mapping[int, float], margin: float = MARGIN) -> int:
    """The smallest batch size whose time per image is within `NEAR_BEST` of the best measured one and at least
    `margin` below batch 1's; 1 when no batch pays that much (or batch 1 was not measured)."""
    per_image = {size: seconds / size for size, seconds in seconds_by_size.items()}
    if 1 not in per_image:
        return 1
    threshold = min(min(per_image.values()) * (1 + NEAR_BEST), per_image[1] * (1 - margin))
    paying = [size for size, seconds in per_image.items() if size > 1 and seconds <= threshold]
    return min(paying, default=1)


def time_batch_sizes(
    forward: Forward,
    sample_shape: tuple[int, ...],
    max_batch_size: int,
    budget_s: float = BUDGET_S,
    repeats: int = REPEATS,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[dict[int, float], tuple[int, ...]]:
    """The best of `repeats` passes at each candidate size (after one untimed pass), and the sizes left out
    because their estimated cost would have overrun `budget_s`. Batch 1 is always timed."""
    rng = np.random.default_rng(0)
    sizes = candidate_sizes(max_batch_size)
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


def pick_batch_limit(
    forward: Forward,
    sample_shape: tuple[int, ...],
    max_batch_size: int,
    setting: int | Literal["auto"],
    streams: int = 1,
    budget_s: float = BUDGET_S,
) -> BatchChoice:
    """Warm the model up and choose its batch limit: `setting` when it is a number (two passes at a batch of up
    to 4 warm it), else by timing it."""
    if setting != "auto":
        warm = np.zeros((min(4, setting), *sample_shape), np.float32)
        for _ in range(2):
            forward(warm)
        return BatchChoice(setting, "serve.batch_limit", streams)
    seconds_by_size, not_timed = time_batch_sizes(forward, sample_shape, max_batch_size, budget_s)
    return BatchChoice(choose_batch_limit(seconds_by_size), "measured", streams, seconds_by_size, not_timed)
