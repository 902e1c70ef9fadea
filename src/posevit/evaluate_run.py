"""One evaluation of a bundle on the test split, writing metrics, plots and the workbook to given paths.

The DVC stage `evaluate` uses the default paths; a sweep run writes into its own run directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from posevit.bundle import MODELS_DIR, load_bundle
from posevit.config import PipelineConfig
from posevit.data.store import PROCESSED_DIR, load_split
from posevit.eval_plots import plot_confusion_matrix, plot_per_class_accuracy
from posevit.evaluation import (
    compute_metrics,
    confusion_matrix,
    hardest_confusions,
    per_class_metrics,
    predict,
    write_predictions,
)
from posevit.hashing import hash_directory
from posevit.report import write_report
from posevit.stage import write_json


@dataclass(frozen=True)
class EvalPaths:
    models: Path = MODELS_DIR
    data: Path = PROCESSED_DIR
    metrics: Path = Path("metrics/test.json")
    report: Path = Path("metrics/report.xlsx")
    predictions: Path = Path("plots/predictions.csv")
    confusion_plot: Path = Path("plots/confusion_matrix.png")
    per_class_plot: Path = Path("plots/per_class_accuracy.png")

    @classmethod
    def under(cls, root: Path, models: Path, data: Path = PROCESSED_DIR) -> EvalPaths:
        """The same layout inside another directory (a sweep run's)."""
        return cls(models=models, data=data, **{name: root / getattr(cls, name) for name in
                                                ("metrics", "report", "predictions", "confusion_plot",
                                                 "per_class_plot")})


def evaluate(cfg: PipelineConfig, paths: EvalPaths = EvalPaths()) -> dict[str, Any]:
    """Evaluate `paths.models` on the test split; returns (and writes) the test metrics."""
    bundle = load_bundle(paths.models)
    test = load_split("test", paths.data)
    predictions = predict(bundle, test, cfg.evaluate.batch_size)
    names = bundle.labels

    metrics = compute_metrics(predictions, len(names), cfg.evaluate.confidence_level)
    per_class = per_class_metrics(predictions, names)
    matrix = confusion_matrix(predictions, len(names))
    write_json(paths.metrics, metrics)
    write_predictions(paths.predictions, predictions, names)
    plot_confusion_matrix(matrix, names, paths.confusion_plot)
    plot_per_class_accuracy(per_class, metrics["accuracy"], paths.per_class_plot)
    write_report(
        paths.report, metrics=metrics, per_class=per_class, matrix=matrix,
        confusions=hardest_confusions(matrix, names), predictions=predictions, names=names,
        about={
            "model_name": bundle.config["model_name"],
            "model_version": hash_directory(paths.models),
            "test_data_hash": hash_directory(paths.data / "test"),
            "freeze_blocks": bundle.config.get("freeze_blocks"),
            "training_params": bundle.config.get("params"),
            "best_val_acc": bundle.config.get("metrics", {}).get("best_val_acc"),
        },
    )
    return metrics
