"""Read, decode and transform many inputs in a pool without torch, in batches in input order, ahead of the model.

Threads by default: PIL releases the GIL while it decodes and resizes, and NumPy while it normalises, so
threads decode in parallel, share the predictor's transform as it is and hand back arrays without pickling
them (`benchmarks/predict_throughput.py` measures them against processes and the DataLoader it replaced). The
process pool (fork) is for measuring, with torch-free transforms: a forked child that runs torch ops after its
parent's torch thread pool did can hang. `depth` batches are submitted ahead of the one the caller holds, so
they decode while its forward pass runs.

`reader_for` is how any caller (this pool, the server) turns bytes into pixels: the predictor's own exact
transform, or with `fast_decode` a JPEG decoded at reduced scale and the fast NumPy transform
(`models.preprocess.EvalPreprocess(fast=True)`), the same for every backend.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import Literal

import numpy as np
from PIL import Image

from posevit.core.errors import ConfigError, ImageError
from posevit.data.images import decode_rgb
from posevit.infer.inputs import Input, S3Objects, read_input
from posevit.models.bundle_config import DataConfig
from posevit.models.preprocess import EvalPreprocess

PoolKind = Literal["threads", "processes"]
Preprocess = Callable[[Image.Image], np.ndarray]


@dataclass(frozen=True)
class ImageReader:
    """Encoded bytes -> (the upright RGB image, its pixels for the model)."""

    preprocess: Preprocess
    draft_side: int | None = None  # JPEGs decode at reduced scale down to this side (fast_decode)

    def read(self, data: bytes, max_pixels: int, limit_name: str) -> tuple[Image.Image, np.ndarray]:
        image = decode_rgb(data, max_pixels, limit_name, self.draft_side)
        return image, self.preprocess(image)


def reader_for(preprocess: Preprocess, data_config: DataConfig, fast_decode: bool) -> ImageReader:
    """The predictor's exact transform (`preprocess`), or the fast decode and transform for its data config."""
    if not fast_decode:
        return ImageReader(preprocess)
    try:
        fast = EvalPreprocess(data_config, fast=True)
    except ConfigError as exc:
        raise ConfigError(
            f"fast_decode needs the NumPy eval transform, which cannot do this model ({exc}): leave fast_decode off"
        ) from None
    return ImageReader(fast, fast.draft_side)


@dataclass(frozen=True)
class Decoded:
    pixels: np.ndarray | None  # (C, H, W) when it decoded
    error: str | None  # why not, otherwise


class Decoder:
    """One input -> its pixels or the reason it has none; never raises for a bad file."""

    def __init__(self, preprocess: Preprocess | ImageReader, max_pixels: int, s3: S3Objects | None = None) -> None:
        self.reader = preprocess if isinstance(preprocess, ImageReader) else ImageReader(preprocess)
        self.max_pixels, self.s3 = max_pixels, s3

    def __call__(self, item: Input) -> Decoded:
        if item.problem:
            return Decoded(None, item.problem)
        try:
            data = read_input(item.path, self.s3)
            if not data:
                raise ImageError("the file is empty")
            _, pixels = self.reader.read(data, self.max_pixels, "--max-pixels")
            return Decoded(pixels, None)
        except ImageError as exc:
            return Decoded(None, str(exc))
        except OSError as exc:  # unreadable: permissions, a vanished file, an I/O or S3 error
            return Decoded(None, f"cannot read: {exc.strerror or exc}")


_worker_decoder: Decoder | None = None  # a process pool's worker's copy (inherited by fork, never pickled)


def _set_worker_decoder(decoder: Decoder) -> None:
    global _worker_decoder
    _worker_decoder = decoder


def _decode_in_worker(item: Input) -> Decoded:
    assert _worker_decoder is not None  # set by the pool's initializer
    return _worker_decoder(item)


def open_pool(
    decoder: Decoder, workers: int, kind: PoolKind = "threads"
) -> tuple[Executor, Callable[[Input], Decoded]]:
    """An executor of `workers` and the function to submit to it."""
    if kind == "threads":
        return ThreadPoolExecutor(workers, thread_name_prefix="decode"), decoder
    # fork: the workers inherit the decoder (its transform and S3 reader) instead of unpickling it
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_set_worker_decoder, initargs=(decoder,))
    return pool, _decode_in_worker


def decoded_batches(
    inputs: Sequence[Input], decoder: Decoder, batch_size: int, workers: int, kind: PoolKind = "threads", depth: int = 2
) -> Iterator[list[Decoded]]:
    """Each batch of `inputs`' decodings, in input order; `workers=0` decodes in the caller, one batch at a time."""
    items = iter(inputs)
    if workers == 0:
        while chunk := list(islice(items, batch_size)):
            yield [decoder(item) for item in chunk]
        return
    pool, decode = open_pool(decoder, workers, kind)
    pending: deque[list[Future[Decoded]]] = deque()

    def submit_next() -> None:
        if chunk := list(islice(items, batch_size)):
            pending.append([pool.submit(decode, item) for item in chunk])

    try:
        for _ in range(depth + 1):
            submit_next()
        while pending:
            batch = pending.popleft()
            submit_next()  # keeps `depth` batches decoding while the caller runs this one
            yield [future.result() for future in batch]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
