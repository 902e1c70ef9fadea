"""Runs published the way the push stage publishes them (in-process), each with its per-image predictions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from posevit.core.config import PushCondition, PushConfig
from posevit.core.labels import ACTION_CLASSES
from posevit.publish.push import PushPaths, PushReceipt, push
from tests.helpers.bundles import tiny_bundle

LABELS = ACTION_CLASSES[:3]
IMAGES = 120  # 40 per label


def write_predictions(path: Path, right: set[int], images: int = IMAGES) -> None:
    """plots/predictions.csv as the evaluate stage writes it: image i is labelled LABELS[i % 3], predicted right
    when i is in `right`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "true", "predicted", "confidence"])
        for image in range(images):
            truth = LABELS[image % 3]
            predicted = truth if image in right else LABELS[(image + 1) % 3]
            writer.writerow([f"train/{image}", truth, predicted, "0.9000"])


def push_run(
    root: Path,
    bucket: str,
    seed: int,
    right: set[int],
    alias: str | None = None,
    images: int = IMAGES,
    **metrics: float,
) -> PushReceipt:
    """A bundle (weights from `seed`), its test metrics (accuracy from `right` unless given), export metrics and
    predictions, pushed to s3://bucket/registry/posevit through the push stage's own function."""
    run = root / f"run{seed}"
    tiny_bundle(run / "models", seed)
    scores = {"accuracy": len(right) / images, "f1_weighted": len(right) / images - 0.01, "ece": 0.05, **metrics}
    (run / "metrics").mkdir(parents=True, exist_ok=True)
    (run / "metrics" / "test.json").write_text(json.dumps({**scores, "n_test": images}))
    (run / "metrics" / "export.json").write_text(json.dumps({"onnx_int8": {"accuracy": scores["accuracy"] - 0.01}}))
    write_predictions(run / "plots" / "predictions.csv", right, images)
    cfg = PushConfig(bucket=bucket, conditions=[PushCondition(metric="accuracy", threshold=0.1)], alias=alias)
    paths = PushPaths(
        models=run / "models",
        test_metrics=run / "metrics" / "test.json",
        report=run / "metrics" / "report.xlsx",
        exports=run / "exports",
        export_metrics=run / "metrics" / "export.json",
        predictions=run / "plots" / "predictions.csv",
    )
    return push(cfg, paths)
