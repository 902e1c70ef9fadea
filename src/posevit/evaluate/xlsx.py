"""What every workbook posevit writes shares (the evaluation report, the sweep summary): reproducible bytes,
one set of styles, tables whose numbers stay numbers, and chart series that name their cells by position."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

# Workbooks carry a creation time; a fixed one keeps the same content byte-identical (stable
# DVC hashes, and the registry can tell "same model, same evidence" from "different evidence").
FIXED_CREATED = datetime(2000, 1, 1, tzinfo=UTC)
RATIO = "0.0000"  # scores, probabilities, p-values


@dataclass(frozen=True)
class Styles:
    label: Format  # row labels
    ratio: Format
    header: Format  # column headings
    best: Format  # a highlighted row
    best_ratio: Format


def reproducible_workbook(path: Path) -> tuple[xlsxwriter.Workbook, Styles]:
    """A new workbook at `path` (parents made) with a fixed creation time, and its styles."""
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(str(path))
    workbook.set_properties({"created": FIXED_CREATED})
    highlight = {"bg_color": "#C6EFCE", "bold": True}
    styles = Styles(
        label=workbook.add_format({"bold": True}),
        ratio=workbook.add_format({"num_format": RATIO}),
        header=workbook.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True}),
        best=workbook.add_format(highlight),
        best_ratio=workbook.add_format({**highlight, "num_format": RATIO}),
    )
    return workbook, styles


def write_table(
    sheet: Worksheet,
    styles: Styles,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    first_row: int = 0,
    label_column: bool = False,
    plain_columns: Collection[int] = (),
    highlighted: Collection[int] = (),
) -> int:
    """`headers` in the header style, then one row per item; returns the last row written.

    Floats get 4 decimals (but in `plain_columns`), the first column is bold with `label_column`, and
    the rows whose index (0-based, among `rows`) is in `highlighted` are filled green.
    """
    sheet.write_row(first_row, 0, headers, styles.header)
    row = first_row
    for index, values in enumerate(rows):
        row += 1
        best = index in highlighted
        for column, value in enumerate(values):
            if label_column and column == 0:
                style: Format | None = styles.label
            elif isinstance(value, float) and column not in plain_columns:
                style = styles.best_ratio if best else styles.ratio
            else:
                style = styles.best if best else None
            sheet.write(row, column, value, style)
    return row


def column_series(sheet: str, column: int, last_row: int, **options: Any) -> dict[str, Any]:
    """A chart series of `sheet`'s `column`, rows 1..last_row, named by its header, categories from column 0."""
    return {
        "name": [sheet, 0, column],
        "categories": [sheet, 1, 0, last_row, 0],
        "values": [sheet, 1, column, last_row, column],
        **options,
    }
