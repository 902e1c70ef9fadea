"""DVC stage `evaluate`: models/ + data/processed/test -> metrics/test.json, plots, metrics/report.xlsx."""

from pathlib import Path

from posevit.bundle import MODELS_DIR, load_bundle
from posevit.config import load_params
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
from posevit.stage import run_stage, write_json

METRICS_FILE = Path("metrics/test.json")
REPORT_FILE = Path("metrics/report.xlsx")
PREDICTIONS_FILE = Path("plots/predictions.csv")
CONFUSION_PLOT = Path("plots/confusion_matrix.png")
PER_CLASS_PLOT = Path("plots/per_class_accuracy.png")


def main() -> None:
    cfg = load_params()
    bundle = load_bundle(MODELS_DIR)
    test = load_split("test")
    predictions = predict(bundle, test, cfg.evaluate.batch_size)
    names = bundle.labels

    metrics = compute_metrics(predictions, len(names), cfg.evaluate.confidence_level)
    per_class = per_class_metrics(predictions, names)
    matrix = confusion_matrix(predictions, len(names))
    write_json(METRICS_FILE, metrics)
    write_predictions(PREDICTIONS_FILE, predictions, names)
    plot_confusion_matrix(matrix, names, CONFUSION_PLOT)
    plot_per_class_accuracy(per_class, metrics["accuracy"], PER_CLASS_PLOT)
    write_report(
        REPORT_FILE, metrics=metrics, per_class=per_class, matrix=matrix,
        confusions=hardest_confusions(matrix, names), predictions=predictions, names=names,
        about={
            "model_name": bundle.config["model_name"],
            "model_version": hash_directory(MODELS_DIR),
            "test_data_hash": hash_directory(PROCESSED_DIR / "test"),
            "freeze_blocks": bundle.config.get("freeze_blocks"),
            "training_params": bundle.config.get("params"),
            "best_val_acc": bundle.config.get("metrics", {}).get("best_val_acc"),
        },
    )
    low, high = metrics["accuracy_ci_low"], metrics["accuracy_ci_high"]
    print(f"test accuracy {metrics['accuracy']:.4f} ({cfg.evaluate.confidence_level:.0%} CI {low:.4f}-{high:.4f}), "
          f"f1_weighted {metrics['f1_weighted']:.4f}, f1_macro {metrics['f1_macro']:.4f}, n={metrics['n_test']}")


if __name__ == "__main__":
    run_stage(main)
