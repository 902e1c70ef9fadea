"""Parity of the exported models with PyTorch on the test split: logit differences, top-1 agreement, accuracy."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NotRequired, TypedDict

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from posevit.data.store import LABELS, PIXELS, with_pixels
from posevit.models.bundle import Bundle

LogitsFn = Callable[[np.ndarray], np.ndarray]


class FormatParity(TypedDict):
    accuracy: float
    accuracy_drop: NotRequired[float]  # PyTorch fp32's accuracy minus this one's
    max_abs_logit_diff: float  # against PyTorch fp32
    top1_agreement: float  # share of images with the same top-1 class as PyTorch fp32


def test_split_logits(
    bundle: Bundle, split: datasets.Dataset, batch_size: int, runners: Mapping[str, LogitsFn]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(labels, {format: logits}) for every image of `split`, PyTorch fp32 as `pytorch`."""
    model = bundle.model.float().eval()
    loader = DataLoader(with_pixels(split, bundle.eval_transform()), batch_size=batch_size)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in ("pytorch", *runners)}
    labels = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc="parity", unit="batch"):
            pixels = batch[PIXELS]
            outputs["pytorch"].append(model(pixels).float().numpy())
            for name, run in runners.items():
                outputs[name].append(run(pixels.numpy()))
            labels.append(batch[LABELS].numpy())
    return np.concatenate(labels), {name: np.concatenate(chunks) for name, chunks in outputs.items()}


def parity(labels: np.ndarray, reference: np.ndarray, logits: np.ndarray) -> FormatParity:
    accuracy, reference_accuracy = ((values.argmax(1) == labels).mean() for values in (logits, reference))
    return FormatParity(
        accuracy=round(float(accuracy), 6),
        accuracy_drop=round(float(reference_accuracy - accuracy), 6),
        max_abs_logit_diff=round(float(np.abs(logits - reference).max()), 6),
        top1_agreement=round(float((logits.argmax(1) == reference.argmax(1)).mean()), 6),
    )
