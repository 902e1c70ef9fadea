"""Classify many image files: decode in a torch-free pool, batched forward passes, one row per input.

An input that cannot be read (missing, not an image, truncated, too large) becomes a row with the reason
and never stops the run; its neighbours in the batch are classified as usual. Rows come back in input
order, a batch at a time, so a caller can stream them to a file as they are produced. Where the inputs
come from (local paths, S3) is `infer.inputs`; how they decode, `infer.decode_pool`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from posevit.core.cores import usable_cores
from posevit.infer.decode_pool import Decoded, Decoder, PoolKind, decoded_batches, reader_for
from posevit.infer.inputs import Input, S3Objects
from posevit.infer.predictor import Predictor


@dataclass(frozen=True)
class Row:
    """One input's answer: its top-k (label, probability), most probable first, or why it has none."""

    path: str
    top: list[tuple[str, float]]
    error: str | None = None


def default_workers() -> int:
    """One decoding thread per core the process may use, at most 8 (beyond that the forward pass is the limit)."""
    return max(1, min(usable_cores(), 8))


def answer_batch(predictor: Predictor, inputs: Sequence[Input], decoded: Sequence[Decoded], top_k: int) -> list[Row]:
    """One forward pass over the decoded ones of a batch; a row for every input, in order."""
    rows = [Row(item.path, [], result.error) for item, result in zip(inputs, decoded, strict=True)]
    good = [position for position, result in enumerate(decoded) if result.pixels is not None]
    if not good:
        return rows
    probabilities = predictor.forward(np.stack([decoded[position].pixels for position in good]))  # type: ignore[misc]
    k = min(top_k, len(predictor.labels))
    classes = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    for position, row, row_classes in zip(good, probabilities, classes, strict=True):
        rows[position] = Row(inputs[position].path, [(predictor.labels[c], float(row[c])) for c in row_classes])
    return rows


def classify_files(
    inputs: Sequence[Input],
    predictor: Predictor,
    batch_size: int = 32,
    top_k: int = 5,
    workers: int | None = None,
    max_pixels: int = 40_000_000,
    s3: S3Objects | None = None,
    kind: PoolKind = "threads",
    fast_decode: bool = False,
) -> Iterator[list[Row]]:
    """The rows of each batch, in input order, as soon as its forward pass is done (the next batches
    decode meanwhile)."""
    workers = default_workers() if workers is None else workers
    workers = min(workers, len(inputs))  # no idle threads for a few files
    reader = reader_for(predictor.preprocess, predictor.config.data_config, fast_decode)
    decoder = Decoder(reader, max_pixels, s3)
    start = 0
    for decoded in decoded_batches(inputs, decoder, batch_size, workers, kind):
        batch = inputs[start : start + len(decoded)]
        start += len(decoded)
        yield answer_batch(predictor, batch, decoded, top_k)
