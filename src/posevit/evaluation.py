"""Score a model bundle on the test split: batched, deterministic predictions and torchmetrics."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)
from tqdm.auto import tqdm

from posevit.bundle import Bundle, BundleError
from posevit.datamodule import with_pixels
from posevit.precision import cpu_supports_bf16


@dataclass
class Predictions:
    ids: list[str]
    targets: np.ndarray  # (n,) class ids
    probabilities: np.ndarray  # (n, classes), rows sum to 1

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)


def check_labels(bundle: Bundle, split: datasets.Dataset) -> None:
    """The bundle must predict exactly the split's classes, in the same order."""
    data_labels = split.features["labels"].names
    if bundle.labels != data_labels:
        missing = sorted(set(data_labels) - set(bundle.labels))
        extra = sorted(set(bundle.labels) - set(data_labels))
        detail = f"missing from the model: {missing}; unknown to the data: {extra}" if missing or extra else "same classes, different order"
        raise BundleError(f"the model's labels do not match the test split's ({detail}). "
                          "Retrain on this data (`dvc repro train`) or evaluate the data it was trained on.")


def autocast_context(device: torch.device):
    """bf16 autocast where the hardware has fast bf16, else a no-op."""
    use_bf16 = cpu_supports_bf16() if device.type == "cpu" else device.type == "cuda" and torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)


@torch.inference_mode()
def predict(bundle: Bundle, split: datasets.Dataset, batch_size: int, num_workers: int = 0) -> Predictions:
    """Class probabilities for every image of `split`, with the bundle's eval transform."""
    check_labels(bundle, split)
    device = next(bundle.model.parameters()).device
    model = bundle.model.eval().to(memory_format=torch.channels_last)
    loader = DataLoader(with_pixels(split, bundle.eval_transform()), batch_size=batch_size, num_workers=num_workers)
    probabilities = []
    with autocast_context(device):
        for batch in tqdm(loader, desc="evaluating", unit="batch"):
            pixels = batch["pixels"].to(device).contiguous(memory_format=torch.channels_last)
            probabilities.append(model(pixels).float().softmax(dim=1).cpu())
    return Predictions(ids=list(split["id"]), targets=np.asarray(split["labels"]),
                       probabilities=torch.cat(probabilities).numpy())


def wilson_interval(successes: int, total: int, level: float) -> tuple[float, float]:
    """Wilson score interval for a proportion: well-behaved near 0 and 1, unlike the normal one."""
    if total == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def compute_metrics(predictions: Predictions, num_classes: int, confidence_level: float) -> dict[str, Any]:
    """The `metrics/test.json` numbers, all from torchmetrics except the interval."""
    preds = torch.from_numpy(predictions.predicted)
    target = torch.from_numpy(predictions.targets)
    args = {"num_classes": num_classes}
    accuracy = float(multiclass_accuracy(preds, target, average="micro", **args))
    low, high = wilson_interval(int((preds == target).sum()), len(target), confidence_level)
    metrics = {"accuracy": accuracy}
    for average in ("weighted", "macro"):
        metrics[f"precision_{average}"] = float(multiclass_precision(preds, target, average=average, **args))
        metrics[f"recall_{average}"] = float(multiclass_recall(preds, target, average=average, **args))
        metrics[f"f1_{average}"] = float(multiclass_f1_score(preds, target, average=average, **args))
    metrics.update({"accuracy_ci_low": low, "accuracy_ci_high": high, "confidence_level": confidence_level,
                    "n_test": len(target)})
    return {key: round(value, 6) if isinstance(value, float) else value for key, value in metrics.items()}


def per_class_metrics(predictions: Predictions, names: list[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1, accuracy (= recall of the class) and support per class."""
    preds = torch.from_numpy(predictions.predicted)
    target = torch.from_numpy(predictions.targets)
    n = len(names)
    precision = multiclass_precision(preds, target, num_classes=n, average=None)
    recall = multiclass_recall(preds, target, num_classes=n, average=None)
    f1 = multiclass_f1_score(preds, target, num_classes=n, average=None)
    support = np.bincount(predictions.targets, minlength=n)
    return [{"class": name, "precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
             "accuracy": float(recall[i]), "support": int(support[i])} for i, name in enumerate(names)]


def confusion_matrix(predictions: Predictions, num_classes: int) -> np.ndarray:
    """Counts: rows are true classes, columns predicted classes."""
    return multiclass_confusion_matrix(torch.from_numpy(predictions.predicted), torch.from_numpy(predictions.targets),
                                       num_classes=num_classes).numpy()


def hardest_confusions(matrix: np.ndarray, names: list[str], top: int = 10) -> list[dict[str, Any]]:
    """The most frequent (true, predicted) mistakes, with the share of the true class they take."""
    off_diagonal = matrix.copy()
    np.fill_diagonal(off_diagonal, 0)
    order = np.argsort(off_diagonal, axis=None)[::-1][:top]
    pairs = []
    for flat in order:
        true, predicted = divmod(int(flat), matrix.shape[1])
        if off_diagonal[true, predicted] == 0:
            break
        pairs.append({"true": names[true], "predicted": names[predicted], "count": int(off_diagonal[true, predicted]),
                      "share_of_true_class": float(off_diagonal[true, predicted] / max(1, matrix[true].sum()))})
    return pairs


def write_predictions(path: Path, predictions: Predictions, names: list[str]) -> None:
    """Per-sample CSV (id, true, predicted, confidence): DVC's `confusion` plot reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "true", "predicted", "confidence"])
        for image_id, true, predicted, confidence in zip(predictions.ids, predictions.targets, predictions.predicted,
                                                         predictions.confidence, strict=True):
            writer.writerow([image_id, names[true], names[predicted], f"{confidence:.4f}"])
