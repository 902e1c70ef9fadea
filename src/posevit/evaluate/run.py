"""One evaluation of a bundle on the test split, writing metrics, plots and the workbook to given paths.

The DVC stage `evaluate` uses the default paths; a sweep run writes into its own run directory.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from posevit.core import paths as default_paths
from posevit.core.config import PipelineConfig
from posevit.core.entrypoint import write_json
from posevit.core.evaluation_record import TestMetrics
from posevit.core.hashing import hash_directory
from posevit.data.store import load_split
from posevit.evaluate.gallery import write_gallery
from posevit.evaluate.plots import plot_confusion_matrix, plot_per_class_accuracy, plot_reliability
from posevit.evaluate.predict import predict, write_predictions
from posevit.evaluate.scores import ECE_BINS, compute_metrics, confusion_matrix, hardest_confusions, per_class_metrics
from posevit.evaluate.workbook import write_report
from posevit.models.bundle import load_bundle


@dataclass(frozen=True)
class EvalPaths:
    models: Path = default_paths.MODELS_DIR
    data: Path = default_paths.PROCESSED_DIR
    metrics: Path = default_paths.TEST_METRICS
    report: Path = default_paths.REPORT
    predictions: Path = default_paths.PREDICTIONS_CSV
    confusion_plot: Path = default_paths.CONFUSION_PLOT
    per_class_plot: Path = default_paths.PER_CLASS_PLOT
    reliability_plot: Path = default_paths.RELIABILITY_PLOT
    errors: Path = default_paths.ERRORS_DIR

    @classmethod
    def under(cls, root: Path, models: Path, data: Path = default_paths.PROCESSED_DIR) -> EvalPaths:
        """The same layout inside another directory (a sweep run's)."""
        return cls(
            models=models,
            data=data,
            **{
                field.name: root / getattr(cls, field.name)
                for field in fields(cls)
                if field.name not in ("models", "data")
            },
        )


def evaluate(cfg: PipelineConfig, paths: EvalPaths = EvalPaths()) -> TestMetrics:
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
    plot_reliability(
        predictions.probabilities,
        predictions.uncalibrated,
        predictions.targets,
        predictions.temperature,
        paths.reliability_plot,
        ECE_BINS,
    )
    gallery = write_gallery(
        predictions, test, names, paths.errors, cfg.evaluate.error_pairs, cfg.evaluate.errors_per_pair
    )
    training = bundle.config.metrics
    write_report(
        paths.report,
        metrics=metrics,
        per_class=per_class,
        matrix=matrix,
        confusions=hardest_confusions(matrix, names),
        predictions=predictions,
        names=names,
        gallery=gallery,
        about={
            "model_name": bundle.config.model_name,
            "model_version": hash_directory(paths.models),
            "test_data_hash": hash_directory(paths.data / "test"),
            "freeze_blocks": bundle.config.freeze_blocks,
            "training_params": bundle.config.params,
            "best_val_acc": training["best_val_acc"] if training else None,
        },
    )
    return metrics
