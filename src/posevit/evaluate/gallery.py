"""The error gallery: for the most confused (true, predicted) pairs, the test images misclassified with the
highest confidence, one contact sheet per pair and an overview, under `plots/errors/` (DVC image plots)."""

from __future__ import annotations

import io
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend, safe in any process
from PIL import Image

from posevit.data.store import IMAGE
from posevit.evaluate.predict import Predictions

OVERVIEW = "overview.png"
COLUMNS = 4  # tiles per row of a pair's sheet
OVERVIEW_TILES = 6  # tiles per pair in the overview
TILE_PIXELS = 160  # images are shrunk to this before drawing: real photos are megapixels
THUMBNAIL_TILES, THUMBNAIL_HEIGHT = 4, 64  # the workbook's strip per pair


@dataclass(frozen=True)
class ConfusedPair:
    true: int
    predicted: int
    rows: list[int]  # the pair's test images (rows of the split), most confident first

    @property
    def count(self) -> int:
        return len(self.rows)


@dataclass(frozen=True)
class GalleryPage:
    true: str
    predicted: str
    count: int  # images of the pair
    shown: int  # tiles on its sheet
    path: Path  # the pair's contact sheet
    thumbnail: bytes  # PNG: its first tiles in a strip, for the workbook


def confused_pairs(predictions: Predictions, top: int) -> list[ConfusedPair]:
    """The `top` most frequent mistakes by count (ties: lower true, then predicted class id first), each with its
    images by falling confidence (ties: split order), the same order as the workbook's Hardest confusions."""
    wrong = np.flatnonzero(predictions.predicted != predictions.targets)
    groups: dict[tuple[int, int], list[int]] = {}
    for row in wrong.tolist():
        groups.setdefault((int(predictions.targets[row]), int(predictions.predicted[row])), []).append(row)
    confidence = predictions.confidence
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))[:top]
    return [
        ConfusedPair(true, predicted, sorted(rows, key=lambda row: (-float(confidence[row]), row)))
        for (true, predicted), rows in ordered
    ]


def label_slugs(names: Sequence[str]) -> list[str]:
    """File-name-safe, unique (also case-insensitively) forms of the class names: letters, digits, `-`, single
    `_` (so the `__as__` between two slugs stays unambiguous); a collision gets the class id appended."""
    base = [re.sub(r"_{2,}", "_", re.sub(r"[^A-Za-z0-9_-]+", "-", name)).strip("-_")[:60] or "class" for name in names]
    taken = Counter(slug.lower() for slug in base)
    slugs = [f"{slug}-{i}" if taken[slug.lower()] > 1 else slug for i, slug in enumerate(base)]
    if len({slug.lower() for slug in slugs}) < len(slugs):  # "a-1" was a name too: ids for everyone
        slugs = [f"{i:02d}-{slug}" for i, slug in enumerate(base)]
    return slugs


def pair_filename(slugs: Sequence[str], pair: ConfusedPair) -> str:
    return f"{slugs[pair.true]}__as__{slugs[pair.predicted]}.png"


def _image(split: datasets.Dataset, row: int) -> Image.Image:
    image = split[row][IMAGE].convert("RGB")
    image.thumbnail((TILE_PIXELS, TILE_PIXELS))
    return image


def _caption(predictions: Predictions, names: Sequence[str], row: int) -> str:
    true, predicted = names[predictions.targets[row]], names[predictions.predicted[row]]
    return f"true: {true}\npred: {predicted} {predictions.confidence[row]:.2f}\n{predictions.ids[row]}"


def _blank(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


@dataclass(frozen=True)
class _Source:
    """What a tile is drawn from: the predictions, the split they were made on and the class names."""

    predictions: Predictions
    split: datasets.Dataset
    names: Sequence[str]

    def draw(self, ax, row: int | None) -> None:
        _blank(ax)
        if row is not None:
            ax.imshow(_image(self.split, row))
            ax.set_title(_caption(self.predictions, self.names, row), fontsize=6.5, loc="left")


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=80, metadata={"Software": None})  # no version stamp: same images, same bytes


def plot_pair(pair: ConfusedPair, source: _Source, per_pair: int, path: Path) -> int:
    """One pair's contact sheet, at most `per_pair` tiles; returns how many it shows."""
    rows = pair.rows[:per_pair]
    columns = min(COLUMNS, len(rows))
    lines = -(-len(rows) // columns)
    fig = Figure(figsize=(columns * 1.9, lines * 2.25 + 0.5))
    axes = fig.subplots(lines, columns, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        source.draw(ax, rows[index] if index < len(rows) else None)
    names = source.names
    fig.suptitle(
        f"{names[pair.true]} predicted as {names[pair.predicted]}: {pair.count} test images, "
        f"the {len(rows)} most confident",
        fontsize=9,
    )
    _save(fig, path)
    return len(rows)


def plot_overview(pairs: Sequence[ConfusedPair], source: _Source, path: Path) -> None:
    """One row per pair (most frequent first), its most confident mistakes left to right."""
    columns = max([min(OVERVIEW_TILES, pair.count) for pair in pairs], default=1)
    fig = Figure(figsize=(columns * 1.7 + 1.6, max(1, len(pairs)) * 2.0 + 0.5))
    axes = fig.subplots(max(1, len(pairs)), columns, squeeze=False)
    for line, pair in enumerate(pairs):
        for column, ax in enumerate(axes[line]):
            source.draw(ax, pair.rows[column] if column < min(OVERVIEW_TILES, pair.count) else None)
        names = source.names
        axes[line][0].set_ylabel(
            f"{names[pair.true]}\nas {names[pair.predicted]}\n({pair.count})", rotation=0, ha="right", va="center"
        )
    if not pairs:
        _blank(axes[0][0])
        axes[0][0].text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    fig.suptitle(f"The {len(pairs)} most confused pairs, most confident mistakes first", fontsize=10)
    _save(fig, path)


def thumbnail_strip(pair: ConfusedPair, split: datasets.Dataset) -> bytes:
    """The pair's first tiles side by side, `THUMBNAIL_HEIGHT` pixels high, as PNG bytes."""
    images = []
    for row in pair.rows[:THUMBNAIL_TILES]:
        image = _image(split, row)
        width = max(1, round(image.width * THUMBNAIL_HEIGHT / image.height))
        images.append(image.resize((width, THUMBNAIL_HEIGHT), Image.Resampling.LANCZOS))
    strip = Image.new("RGB", (sum(i.width for i in images) + 2 * (len(images) - 1), THUMBNAIL_HEIGHT), "white")
    x = 0
    for image in images:
        strip.paste(image, (x, 0))
        x += image.width + 2
    buffer = io.BytesIO()
    strip.save(buffer, format="PNG")
    return buffer.getvalue()


def write_gallery(
    predictions: Predictions,
    split: datasets.Dataset,
    names: Sequence[str],
    directory: Path,
    pairs: int,
    per_pair: int,
) -> list[GalleryPage]:
    """Replace `directory` with the overview and one sheet per pair (no file of an older run stays)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    chosen = confused_pairs(predictions, pairs)
    slugs = label_slugs(names)
    source = _Source(predictions, split, names)
    pages = []
    for pair in chosen:
        path = directory / pair_filename(slugs, pair)
        shown = plot_pair(pair, source, per_pair, path)
        pages.append(
            GalleryPage(names[pair.true], names[pair.predicted], pair.count, shown, path, thumbnail_strip(pair, split))
        )
    plot_overview(chosen, source, directory / OVERVIEW)
    return pages
