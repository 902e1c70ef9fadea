"""Batched, deterministic predictions of a bundle on a processed split, with the bundle's eval transform."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from posevit.core.precision import autocast
from posevit.data.store import ID, LABELS, PIXELS, class_names, with_pixels
from posevit.models.bundle import Bundle
from posevit.models.bundle_config import BundleError


@dataclass(frozen=True)
class Predictions:
    ids: list[str]
    targets: np.ndarray  # (n,) class ids
    logits: np.ndarray  # (n, classes)
    temperature: float = 1.0  # the bundle's calibration

    @cached_property  # read by every metric and plot of evaluate: one softmax, not one per use
    def probabilities(self) -> np.ndarray:
        """Calibrated: softmax(logits / temperature), what the app, the API and `posevit predict` serve."""
        return torch.from_numpy(self.logits / self.temperature).softmax(dim=1).numpy()

    @property
    def uncalibrated(self) -> np.ndarray:
        return torch.from_numpy(self.logits).softmax(dim=1).numpy()

    @cached_property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return self.probabilities.max(axis=1)


def check_labels(bundle: Bundle, split: datasets.Dataset) -> None:
    """The bundle must predict exactly the split's classes, in the same order."""
    data_labels = class_names(split)
    if bundle.labels != data_labels:
        missing = sorted(set(data_labels) - set(bundle.labels))
        extra = sorted(set(bundle.labels) - set(data_labels))
        detail = (
            f"missing from the model: {missing}; unknown to the data: {extra}"
            if missing or extra
            else "same classes, different order"
        )
        raise BundleError(
            f"the model's labels do not match the test split's ({detail}). "
            "Retrain on this data (`dvc repro train`) or evaluate the data it was trained on."
        )


@torch.inference_mode()
def predict(bundle: Bundle, split: datasets.Dataset, batch_size: int, num_workers: int = 0) -> Predictions:
    """Logits for every image of `split`, with the bundle's eval transform (and its temperature)."""
    check_labels(bundle, split)
    device = next(bundle.model.parameters()).device
    model = bundle.model.eval().to(memory_format=torch.channels_last)
    loader = DataLoader(with_pixels(split, bundle.eval_transform()), batch_size=batch_size, num_workers=num_workers)
    logits = []
    with autocast(device):
        for batch in tqdm(loader, desc="evaluating", unit="batch"):
            pixels = batch[PIXELS].to(device).contiguous(memory_format=torch.channels_last)
            logits.append(model(pixels).float().cpu())
    return Predictions(
        ids=list(split[ID]),
        targets=np.asarray(split[LABELS]),
        logits=torch.cat(logits).numpy(),
        temperature=bundle.temperature,
    )


def write_predictions(path: Path, predictions: Predictions, names: list[str]) -> None:
    """Per-sample CSV (id, true, predicted, confidence): DVC's `confusion` plot reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "true", "predicted", "confidence"])
        for image_id, true, predicted, confidence in zip(
            predictions.ids, predictions.targets, predictions.predicted, predictions.confidence, strict=True
        ):
            writer.writerow([image_id, names[true], names[predicted], f"{confidence:.4f}"])
