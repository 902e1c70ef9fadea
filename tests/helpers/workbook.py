"""Reading back the evaluation workbook."""

from __future__ import annotations

import openpyxl
import pytest


def check_workbook(path, metrics: dict) -> None:
    """The Summary sheet holds exactly the numbers of metrics/test.json."""
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", "Per class", "Confusion matrix", "Hardest confusions", "Misclassified"]
    rows = {row[0]: row[1] for row in book["Summary"].iter_rows(min_row=2, values_only=True) if row[0]}
    for key, value in metrics.items():
        assert rows[key] == pytest.approx(value), key
