"""`metrics/report.xlsx`: the evaluation as a workbook a reviewer can open and sort."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posevit.core.evaluation_record import TestMetrics
from posevit.evaluate.gallery import GalleryPage
from posevit.evaluate.predict import Predictions
from posevit.evaluate.xlsx import column_series, reproducible_workbook, write_table

_HEAT = {"type": "3_color_scale", "min_color": "#F8696B", "mid_color": "#FFEB84", "max_color": "#63BE7B"}


def _top_k(probabilities: np.ndarray, names: list[str], k: int = 3) -> str:
    order = np.argsort(probabilities)[::-1][:k]
    return ", ".join(f"{names[i]} {probabilities[i]:.2f}" for i in order)


def _link_gallery(sheet, report: Path, confusions: list[dict[str, Any]], gallery: Sequence[GalleryPage]) -> None:
    """Per pair with a contact sheet: a link to the PNG, relative to the workbook (valid in the project tree and
    in `dvc plots`), and its first tiles embedded (they travel with the workbook, e.g. into the registry, which
    publishes report.xlsx but not plots/)."""
    pages = {(page.true, page.predicted): page for page in gallery}
    sheet.set_column(4, 4, 34)
    sheet.set_column(5, 5, 48)
    for row, pair in enumerate(confusions, start=1):
        page = pages.get((pair["true"], pair["predicted"]))
        if page is None:
            continue
        # xlsxwriter writes a cell's file link with backslashes, as Excel does; the picture's link with slashes
        link = f"external:{Path(os.path.relpath(page.path, report.parent)).as_posix()}"
        sheet.write_url(row, 4, link, string=page.path.name, tip=f"{page.shown} of {page.count} images")
        sheet.set_row(row, 52)  # 64 px thumbnails at 0.9 scale
        picture = {"image_data": io.BytesIO(page.thumbnail), "x_scale": 0.9, "y_scale": 0.9, "url": link}
        sheet.insert_image(row, 5, page.path.name, picture)


def write_report(
    path: Path,
    *,
    metrics: TestMetrics,
    per_class: list[dict[str, Any]],
    matrix: np.ndarray,
    confusions: list[dict[str, Any]],
    predictions: Predictions,
    names: list[str],
    about: dict[str, Any],
    gallery: Sequence[GalleryPage] = (),
) -> None:
    """Summary, Per class (+ chart), Confusion matrix, Hardest confusions, Misclassified."""
    workbook, styles = reproducible_workbook(path)

    summary = workbook.add_worksheet("Summary")
    summary.set_column(0, 0, 28)
    summary.set_column(1, 1, 70)
    row = write_table(summary, styles, ["metric", "value"], metrics.items(), label_column=True)
    about_rows = [(key, value if isinstance(value, (int, float)) else str(value)) for key, value in about.items()]
    write_table(summary, styles, ["about", ""], about_rows, first_row=row + 2, label_column=True, plain_columns={1})

    sheet = workbook.add_worksheet("Per class")
    columns = ["class", "precision", "recall", "f1", "accuracy", "support"]
    last = write_table(sheet, styles, columns, ([entry[column] for column in columns] for entry in per_class))
    sheet.set_column(0, 0, 20)
    sheet.conditional_format(1, 1, last, 4, _HEAT)
    chart = workbook.add_chart({"type": "bar"})
    for index, colour in ((3, "#4472C4"), (4, "#ED7D31")):
        chart.add_series(column_series("Per class", index, last, fill={"color": colour}))
    chart.set_title({"name": "F1 and accuracy per class"})
    chart.set_x_axis({"min": 0, "max": 1})
    chart.set_size({"width": 620, "height": 480})
    sheet.insert_chart(1, 7, chart)

    confusion = workbook.add_worksheet("Confusion matrix")
    rows = ([name, *(int(v) for v in matrix[i])] for i, name in enumerate(names))
    write_table(confusion, styles, ["true \\ predicted", *names], rows, label_column=True)
    confusion.set_row(0, 60)
    confusion.set_column(0, 0, 20)
    confusion.conditional_format(
        1, 1, len(names), len(names), {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#2F5597"}
    )

    hardest = workbook.add_worksheet("Hardest confusions")
    header = ["true", "predicted", "count", "share of true class", "error gallery", "most confident mistakes"]
    write_table(
        hardest, styles, header, ([p["true"], p["predicted"], p["count"], p["share_of_true_class"]] for p in confusions)
    )
    hardest.set_column(0, 1, 20)
    _link_gallery(hardest, path, confusions, gallery)

    wrong = workbook.add_worksheet("Misclassified")
    mistakes = np.flatnonzero(predictions.predicted != predictions.targets)
    mistakes = mistakes[np.argsort(-predictions.confidence[mistakes], kind="stable")]  # most confident first
    rows = (
        [
            predictions.ids[i],
            names[predictions.targets[i]],
            names[predictions.predicted[i]],
            float(predictions.confidence[i]),
            _top_k(predictions.probabilities[i], names),
        ]
        for i in mistakes.tolist()
    )
    write_table(wrong, styles, ["id", "true", "predicted", "confidence", "top-3"], rows)
    wrong.set_column(0, 2, 20)
    wrong.set_column(4, 4, 60)
    wrong.autofilter(0, 0, max(1, len(mistakes)), 4)
    workbook.close()
