"""`metrics/report.xlsx`: the evaluation as a workbook a reviewer can open and sort."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import xlsxwriter

from posevit.core.evaluation_record import TestMetrics
from posevit.evaluate.predict import Predictions

_HEAT = {"type": "3_color_scale", "min_color": "#F8696B", "mid_color": "#FFEB84", "max_color": "#63BE7B"}


# Workbooks carry a creation time; a fixed one keeps the same evaluation byte-identical (stable
# DVC hashes, and the registry can tell "same model, same evidence" from "different evidence").
FIXED_CREATED = datetime(2000, 1, 1, tzinfo=UTC)


def reproducible_workbook(path: Path) -> xlsxwriter.Workbook:
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(str(path))
    workbook.set_properties({"created": FIXED_CREATED})
    return workbook


def _top_k(probabilities: np.ndarray, names: list[str], k: int = 3) -> str:
    order = np.argsort(probabilities)[::-1][:k]
    return ", ".join(f"{names[i]} {probabilities[i]:.2f}" for i in order)


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
) -> None:
    """Summary, Per class (+ chart), Confusion matrix, Hardest confusions, Misclassified."""
    workbook = reproducible_workbook(path)
    bold = workbook.add_format({"bold": True})
    ratio = workbook.add_format({"num_format": "0.0000"})
    header = workbook.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True})

    summary = workbook.add_worksheet("Summary")
    summary.set_column(0, 0, 28)
    summary.set_column(1, 1, 70)
    summary.write_row(0, 0, ["metric", "value"], header)
    row = 1
    for key, value in metrics.items():
        summary.write(row, 0, key, bold)
        summary.write(row, 1, value, ratio if isinstance(value, float) else None)
        row += 1
    row += 1
    summary.write_row(row, 0, ["about", ""], header)
    for key, value in about.items():
        row += 1
        summary.write(row, 0, key, bold)
        summary.write(row, 1, value if isinstance(value, (int, float)) else str(value))

    sheet = workbook.add_worksheet("Per class")
    columns = ["class", "precision", "recall", "f1", "accuracy", "support"]
    sheet.write_row(0, 0, columns, header)
    sheet.set_column(0, 0, 20)
    for i, entry in enumerate(per_class, start=1):
        sheet.write(i, 0, entry["class"])
        for j, column in enumerate(columns[1:5], start=1):
            sheet.write_number(i, j, entry[column], ratio)
        sheet.write_number(i, 5, entry["support"])
    last = len(per_class)
    sheet.conditional_format(1, 1, last, 4, _HEAT)
    chart = workbook.add_chart({"type": "bar"})
    for index, colour in ((3, "#4472C4"), (4, "#ED7D31")):
        chart.add_series(
            {
                "name": ["Per class", 0, index],
                "categories": ["Per class", 1, 0, last, 0],
                "values": ["Per class", 1, index, last, index],
                "fill": {"color": colour},
            }
        )
    chart.set_title({"name": "F1 and accuracy per class"})
    chart.set_x_axis({"min": 0, "max": 1})
    chart.set_size({"width": 620, "height": 480})
    sheet.insert_chart(1, 7, chart)

    confusion = workbook.add_worksheet("Confusion matrix")
    confusion.write(0, 0, "true \\ predicted", header)
    confusion.write_row(0, 1, names, header)
    confusion.set_row(0, 60)
    confusion.set_column(0, 0, 20)
    for i, name in enumerate(names, start=1):
        confusion.write(i, 0, name, bold)
        confusion.write_row(i, 1, [int(v) for v in matrix[i - 1]])
    confusion.conditional_format(
        1, 1, len(names), len(names), {"type": "2_color_scale", "min_color": "#FFFFFF", "max_color": "#2F5597"}
    )

    hardest = workbook.add_worksheet("Hardest confusions")
    hardest.write_row(0, 0, ["true", "predicted", "count", "share of true class"], header)
    hardest.set_column(0, 1, 20)
    for i, pair in enumerate(confusions, start=1):
        hardest.write_row(i, 0, [pair["true"], pair["predicted"], pair["count"]])
        hardest.write_number(i, 3, pair["share_of_true_class"], ratio)

    wrong = workbook.add_worksheet("Misclassified")
    wrong.write_row(0, 0, ["id", "true", "predicted", "confidence", "top-3"], header)
    wrong.set_column(0, 2, 20)
    wrong.set_column(4, 4, 60)
    mistakes = np.flatnonzero(predictions.predicted != predictions.targets)
    mistakes = mistakes[np.argsort(-predictions.confidence[mistakes], kind="stable")]  # most confident first
    for row, index in enumerate(mistakes.tolist(), start=1):
        wrong.write_row(
            row, 0, [predictions.ids[index], names[predictions.targets[index]], names[predictions.predicted[index]]]
        )
        wrong.write_number(row, 3, float(predictions.confidence[index]), ratio)
        wrong.write(row, 4, _top_k(predictions.probabilities[index], names))
    wrong.autofilter(0, 0, max(1, len(mistakes)), 4)
    workbook.close()
