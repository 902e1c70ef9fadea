"""The test metrics from predictions: torchmetrics scores, a Wilson interval, per-class results, confusions."""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from posevit.core.evaluation_record import TestMetrics
from posevit.evaluate.predict import Predictions

ECE_BINS = 15  # confidence bins of the expected calibration error and the reliability diagram


def wilson_interval(successes: int, total: int, level: float) -> tuple[float, float]:
    """Wilson score interval for a proportion: well-behaved near 0 and 1, unlike the normal one."""
    if total == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def compute_metrics(predictions: Predictions, num_classes: int, confidence_level: float) -> TestMetrics:
    """The `metrics/test.json` numbers, all from torchmetrics except the interval (floats to 6 places)."""
    preds = torch.from_numpy(predictions.predicted)
    target = torch.from_numpy(predictions.targets)

    def score(metric: Any, average: str) -> float:
        return round(float(metric(preds, target, num_classes=num_classes, average=average)), 6)

    low, high = wilson_interval(int((preds == target).sum()), len(target), confidence_level)
    probabilities = torch.from_numpy(predictions.probabilities)
    top_k = min(5, num_classes)
    top5 = multiclass_accuracy(probabilities, target, num_classes=num_classes, average="micro", top_k=top_k)

    def ece(probs: np.ndarray) -> float:
        error = multiclass_calibration_error(torch.from_numpy(probs), target, num_classes=num_classes, n_bins=ECE_BINS)
        return round(float(error), 6)

    return TestMetrics(
        accuracy=score(multiclass_accuracy, "micro"),
        top5_accuracy=round(float(top5), 6),
        precision_weighted=score(multiclass_precision, "weighted"),
        recall_weighted=score(multiclass_recall, "weighted"),
        f1_weighted=score(multiclass_f1_score, "weighted"),
        precision_macro=score(multiclass_precision, "macro"),
        recall_macro=score(multiclass_recall, "macro"),
        f1_macro=score(multiclass_f1_score, "macro"),
        accuracy_ci_low=round(float(low), 6),
        accuracy_ci_high=round(float(high), 6),
        confidence_level=round(confidence_level, 6),
        ece=ece(predictions.probabilities),
        ece_uncalibrated=ece(predictions.uncalibrated),
        temperature=round(predictions.temperature, 6),
        n_test=len(target),
    )


def per_class_metrics(predictions: Predictions, names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1, accuracy (= recall of the class) and support per class."""
    preds = torch.from_numpy(predictions.predicted)
    target = torch.from_numpy(predictions.targets)
    n = len(names)
    precision = multiclass_precision(preds, target, num_classes=n, average=None)
    recall = multiclass_recall(preds, target, num_classes=n, average=None)
    f1 = multiclass_f1_score(preds, target, num_classes=n, average=None)
    support = np.bincount(predictions.targets, minlength=n)
    return [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "accuracy": float(recall[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    ]


def confusion_matrix(predictions: Predictions, num_classes: int) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes."""
    return multiclass_confusion_matrix(
        torch.from_numpy(predictions.predicted), torch.from_numpy(predictions.targets), num_classes=num_classes
    ).numpy()


def hardest_confusions(matrix: np.ndarray, names: list[str], top: int = 10) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) mistakes, with the share of the true class they take; ties go by
    (true, predicted) class id, the order of the error gallery's pairs."""
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    order = np.argsort(-off_diagonal, axis=None, kind="stable")[:top]
    pairs = []
    for flat in order:
        true, predicted = divmod(int(flat), matrix.shape[1])
        if off_diagonal[true, predicted] == 0:
            break
        pairs.append(
            {
                "true": names[true],
                "predicted": names[predicted],
                "count": int(off_diagonal[true, predicted]),
                "share_of_true_class": float(off_diagonal[true, predicted] / max(1, matrix[true].sum())),
            }
        )
    return pairs
