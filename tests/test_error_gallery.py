"""The error gallery: which pairs, which images in which order, how many, under which names, linked from the
workbook; and through the real DVC, `dvc plots show` and `dvc plots diff` render it as images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import openpyxl
import pytest

from posevit.core.labels import ACTION_CLASSES
from posevit.evaluate.gallery import OVERVIEW, confused_pairs, label_slugs, write_gallery
from posevit.evaluate.predict import Predictions
from posevit.evaluate.scores import compute_metrics, confusion_matrix, hardest_confusions, per_class_metrics
from posevit.evaluate.workbook import write_report
from tests.helpers.dvc_project import reproduced_smoke_project
from tests.helpers.images import action_dataset

# (true, predicted, logit of the prediction) per mistake: 0 -> 1 five times, 2 -> 3 and 4 -> 5 three times
# each (a tie: the lower true class first), 6 -> 7 once; the logit sets the confidence.
MISTAKES = [(0, 1, a) for a in (3.0, 6.0, 4.0, 6.0, 5.0)] + [(2, 3, a) for a in (2.0, 4.0, 3.0)]
MISTAKES += [(4, 5, a) for a in (5.0, 3.0, 4.0)] + [(6, 7, 3.0)]


def _predictions() -> tuple[Predictions, np.ndarray]:
    """The mistakes above, then one right answer per class; returns the predictions and the test labels."""
    rows = MISTAKES + [(c, c, 5.0) for c in range(len(ACTION_CLASSES))]
    logits = np.zeros((len(rows), len(ACTION_CLASSES)))
    for i, (_, predicted, logit) in enumerate(rows):
        logits[i, predicted] = logit
    targets = np.asarray([true for true, _, _ in rows])
    return Predictions(ids=[f"train/{i}" for i in range(len(rows))], targets=targets, logits=logits), targets


def test_the_most_confused_pairs_come_first_each_with_its_most_confident_mistakes_first():
    predictions, _ = _predictions()
    pairs = confused_pairs(predictions, top=3)
    assert [(p.true, p.predicted, p.count) for p in pairs] == [(0, 1, 5), (2, 3, 3), (4, 5, 3)]
    # logits 3, 6, 4, 6, 5 at rows 0..4: most confident first, the two 6s in split order
    assert pairs[0].rows == [1, 3, 4, 2, 0]
    assert pairs[1].rows == [6, 7, 5] and pairs[2].rows == [8, 10, 9]
    confidence = predictions.confidence
    assert all(np.all(np.diff(confidence[p.rows]) <= 0) for p in pairs)
    # the workbook's Hardest confusions list the same pairs in the same order
    names = list(ACTION_CLASSES)
    table = hardest_confusions(confusion_matrix(predictions, len(names)), names, top=4)
    assert [(t["true"], t["predicted"]) for t in table] == [(names[p.true], names[p.predicted]) for p in pairs] + [
        (names[6], names[7])
    ]
    assert len(confused_pairs(predictions, top=10)) == 4  # no more pairs than there are mistakes


def test_odd_class_names_give_safe_unique_file_names():
    names = ["riding/bike", "riding bike", "Riding-Bike", "x__as__y", "..", "ok", "ünïcode ok"]
    slugs = label_slugs(names)
    assert slugs == ["riding-bike-0", "riding-bike-1", "Riding-Bike-2", "x_as_y", "class", "ok", "n-code-ok"]
    assert len({s.lower() for s in slugs}) == len(names)
    assert all(s.replace("-", "").replace("_", "").isalnum() and "__" not in s for s in slugs)
    assert label_slugs(["a", "a", "a-1"]) == ["00-a", "01-a", "02-a-1"]  # a suffix that collides: ids for all


def test_the_gallery_is_a_sheet_per_pair_with_at_most_n_tiles_and_a_rerun_leaves_only_its_own_files(tmp_path):
    predictions, targets = _predictions()
    split = action_dataset(targets.tolist())
    names = ["calling/phone", *ACTION_CLASSES[1:]]  # a label with a slash must still make one file
    errors = tmp_path / "plots" / "errors"

    pages = write_gallery(predictions, split, names, errors, pairs=3, per_pair=4)
    assert [(p.true, p.predicted, p.count, p.shown) for p in pages] == [
        ("calling/phone", "clapping", 5, 4),  # five mistakes, four tiles
        ("cycling", "dancing", 3, 3),
        ("drinking", "eating", 3, 3),
    ]
    expected = {OVERVIEW, "calling-phone__as__clapping.png", "cycling__as__dancing.png", "drinking__as__eating.png"}
    assert {p.name for p in errors.iterdir()} == expected
    assert all(p.path.parent == errors and p.thumbnail.startswith(b"\x89PNG") for p in pages)
    sheets = {p.name: p.read_bytes() for p in errors.iterdir()}
    assert all(data.startswith(b"\x89PNG") and len(data) > 5_000 for data in sheets.values())

    write_gallery(predictions, split, names, errors, pairs=3, per_pair=4)
    assert {p.name: p.read_bytes() for p in errors.iterdir()} == sheets  # same predictions, same bytes

    (errors / "stale__as__file.png").write_bytes(b"from an older run")
    write_gallery(predictions, split, names, errors, pairs=1, per_pair=2)
    assert {p.name for p in errors.iterdir()} == {OVERVIEW, "calling-phone__as__clapping.png"}


def test_the_hardest_confusions_sheet_links_each_pairs_sheet_and_shows_its_mistakes(tmp_path):
    predictions, targets = _predictions()
    names = list(ACTION_CLASSES)
    pages = write_gallery(
        predictions, action_dataset(targets.tolist()), names, tmp_path / "plots/errors", pairs=2, per_pair=3
    )
    matrix = confusion_matrix(predictions, len(names))
    report = tmp_path / "metrics" / "report.xlsx"
    write_report(
        report,
        metrics=compute_metrics(predictions, len(names), 0.95),
        per_class=per_class_metrics(predictions, names),
        matrix=matrix,
        confusions=hardest_confusions(matrix, names),
        predictions=predictions,
        names=names,
        about={},
        gallery=pages,
    )
    sheet = openpyxl.load_workbook(report)["Hardest confusions"]
    assert [c.value for c in sheet[1]][4:] == ["error gallery", "most confident mistakes"]
    links = {row: sheet.cell(row, 5).hyperlink for row in range(2, 6)}
    targets = [links[row].target.replace("\\", "/") for row in (2, 3)]  # Excel's file links use backslashes
    assert targets == ["../plots/errors/calling__as__clapping.png", "../plots/errors/cycling__as__dancing.png"]
    assert (report.parent / targets[0]).resolve() == pages[0].path.resolve()  # resolves from the workbook
    assert links[4] is None and links[5] is None  # pairs beyond evaluate.error_pairs have no sheet
    assert len(sheet._images) == 2  # a strip of each linked pair's mistakes


@pytest.mark.slow
def test_dvc_plots_show_and_diff_render_the_gallery_as_images(tmp_path_factory):
    """The reproduced smoke project (shared with the train tests): the gallery is an image plot of evaluate."""
    project = reproduced_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("gallery") / "posevit")
    errors = project.root / "plots/errors"
    files = sorted(p.name for p in errors.iterdir())
    assert OVERVIEW in files and len(files) >= 2 and all("__as__" in f for f in files if f != OVERVIEW), files
    assert "up to date" in project.dvc("status").stdout

    shown = json.loads(project.dvc("plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown["errors"]
    gallery = {Path(name).name: plots for name, plots in shown["data"].items() if name.startswith("plots/errors/")}
    assert set(gallery) == set(files), shown["data"].keys()
    assert all(plot["type"] == "image" for plots in gallery.values() for plot in plots)
    project.dvc("plots", "show")
    html = (project.root / "dvc_plots/index.html").read_text()
    assert all(name in html for name in files), html[:2000]

    # the workspace against the commit: each gallery image, once per revision
    diff = json.loads(project.dvc("plots", "diff", "HEAD", "--json").stdout)
    assert not diff.get("errors"), diff["errors"]
    overview = diff["data"]["plots/errors/overview.png"]
    assert sorted(plot["revisions"][0] for plot in overview) == ["HEAD", "workspace"]
    assert all((project.root / plot["url"]).is_file() for plot in overview)
