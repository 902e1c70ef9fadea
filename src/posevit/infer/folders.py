"""Classify many image files: expand paths, decode in DataLoader workers, batched forward passes, one row per input.

An input that cannot be read (missing, not an image, truncated, too large) becomes a row with
the reason and never stops the run; its neighbours in the batch are classified as usual. Rows
come back in input order, so a caller can stream them to a file as they are produced.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from posevit.core.errors import ImageError
from posevit.core.precision import usable_cores
from posevit.data.images import decode_rgb
from posevit.infer.predictor import Predictor


def image_extensions() -> frozenset[str]:
    """Suffixes of every format PIL can open (a folder's other files are not images and are skipped)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass(frozen=True)
class Input:
    path: str
    problem: str | None = None  # set when the argument named nothing readable


@dataclass(frozen=True)
class Expanded:
    inputs: list[Input]
    skipped: int  # files inside folders that are not images by their suffix


def expand_inputs(arguments: Sequence[str]) -> Expanded:
    """Files as given, folders recursively (image suffixes only), globs (`**` recurses); each path once, in order."""
    extensions = image_extensions()
    inputs: dict[str, Input] = {}
    skipped = 0

    def add_folder(folder: Path) -> None:
        nonlocal skipped
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            if path.suffix.lower() in extensions:
                inputs.setdefault(str(path), Input(str(path)))
            else:
                skipped += 1

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            add_folder(path)
        elif path.is_file():
            inputs.setdefault(argument, Input(argument))
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                inputs.setdefault(argument, Input(argument, "the pattern matched no files"))
            for match in matches:
                if Path(match).is_dir():
                    add_folder(Path(match))
                else:
                    inputs.setdefault(match, Input(match))
        else:
            inputs.setdefault(argument, Input(argument, "no such file or folder"))
    return Expanded(list(inputs.values()), skipped)


@dataclass(frozen=True)
class Row:
    """One input's answer: its top-k (label, probability), most probable first, or why it has none."""

    path: str
    top: list[tuple[str, float]]
    error: str | None = None


class ImageFiles(Dataset):
    """Reads, decodes (upright RGB, pixel limit checked before decoding) and transforms one file per item."""

    def __init__(self, inputs: Sequence[Input], predictor: Predictor, max_pixels: int) -> None:
        self.inputs, self.predictor, self.max_pixels = inputs, predictor, max_pixels

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str | None]:
        item = self.inputs[index]
        if item.problem:
            return index, None, item.problem
        try:
            data = Path(item.path).read_bytes()
            if not data:
                raise ImageError("the file is empty")
            image = decode_rgb(data, self.max_pixels, limit_name="--max-pixels")
            return index, self.predictor.preprocess(image), None
        except ImageError as exc:
            return index, None, str(exc)
        except OSError as exc:  # unreadable: permissions, a vanished file, an I/O error
            return index, None, f"cannot read: {exc.strerror or exc}"


@dataclass(frozen=True)
class Batch:
    indices: list[int]  # every input of the batch, in order
    pixels: np.ndarray | None  # (n_good, C, H, W) for the decoded ones
    good: list[int]  # positions (in `indices`) of the decoded ones
    errors: dict[int, str]  # position -> why it was not decoded


def collate(items: list[tuple[int, np.ndarray | None, str | None]]) -> Batch:
    good = [position for position, (_, pixels, _) in enumerate(items) if pixels is not None]
    arrays = [pixels for _, pixels, _ in items if pixels is not None]
    return Batch(
        indices=[index for index, _, _ in items],
        pixels=np.stack(arrays) if arrays else None,
        good=good,
        errors={position: error for position, (_, _, error) in enumerate(items) if error is not None},
    )


def default_workers() -> int:
    """One decoding worker per core the process may use, at most 8 (beyond that the forward pass is the limit)."""
    cores = usable_cores()
    return max(1, min(cores, 8))


def classify_files(
    inputs: Sequence[Input],
    predictor: Predictor,
    batch_size: int = 32,
    top_k: int = 5,
    workers: int | None = None,
    max_pixels: int = 40_000_000,
) -> Iterator[list[Row]]:
    """The rows of each batch, in input order, as soon as its forward pass is done."""
    workers = default_workers() if workers is None else workers
    loader = DataLoader(
        ImageFiles(inputs, predictor, max_pixels),
        batch_size=batch_size,
        num_workers=min(workers, -(-len(inputs) // batch_size)),  # no idle workers for a few files
        collate_fn=collate,
    )
    k = min(top_k, len(predictor.labels))
    for batch in loader:
        rows = [Row(inputs[index].path, [], batch.errors.get(position)) for position, index in enumerate(batch.indices)]
        if batch.pixels is not None:
            probabilities = predictor.forward(batch.pixels)
            classes = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
            for position, row, row_classes in zip(batch.good, probabilities, classes, strict=True):
                top = [(predictor.labels[c], float(row[c])) for c in row_classes]
                rows[position] = Row(rows[position].path, top)
        yield rows
