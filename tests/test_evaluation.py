"""Evaluation numbers: torchmetrics against scikit-learn, the interval, the workbook, label checks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import openpyxl
import pytest
import torch
from sklearn import metrics as sk

from posevit.core.labels import ACTION_CLASSES
from posevit.evaluate.predict import Predictions, check_labels
from posevit.evaluate.scores import (
    compute_metrics,
    confusion_matrix,
    hardest_confusions,
    per_class_metrics,
    wilson_interval,
)
from posevit.evaluate.workbook import write_report
from posevit.models.bundle import Bundle
from posevit.models.bundle_config import BundleConfig, BundleError, DataConfig
from tests.helpers.images import action_dataset, balanced_labels
from tests.helpers.workbook import check_workbook

NAMES = list(ACTION_CLASSES)


@pytest.fixture
def predictions() -> Predictions:
    """Fixed, imperfect predictions: right ~60% of the time, one class never predicted."""
    rng = np.random.default_rng(3)
    targets = np.asarray(balanced_labels(20))
    logits = rng.normal(size=(len(targets), 15))
    logits[np.arange(len(targets)), targets] += rng.choice([0.0, 4.0], size=len(targets), p=[0.4, 0.6])
    logits[:, 7] -= 100.0  # nothing is ever predicted 'hugging'
    return Predictions(ids=[f"train/{i}" for i in range(len(targets))], targets=targets, logits=logits)


def test_every_metric_matches_scikit_learn(predictions):
    y, p = predictions.targets, predictions.predicted
    ours = compute_metrics(predictions, 15, 0.95)
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y, p), abs=1e-6)
    for average in ("weighted", "macro"):
        kwargs = {"average": average, "zero_division": 0, "labels": range(15)}
        assert ours[f"precision_{average}"] == pytest.approx(sk.precision_score(y, p, **kwargs), abs=1e-6)
        assert ours[f"recall_{average}"] == pytest.approx(sk.recall_score(y, p, **kwargs), abs=1e-6)
        assert ours[f"f1_{average}"] == pytest.approx(sk.f1_score(y, p, **kwargs), abs=1e-6)
    assert ours["n_test"] == 300
    assert ours["accuracy_ci_low"] < ours["accuracy"] < ours["accuracy_ci_high"]

    per_class = per_class_metrics(predictions, NAMES)
    report = sk.classification_report(y, p, labels=range(15), output_dict=True, zero_division=0)
    for i, entry in enumerate(per_class):
        assert entry["precision"] == pytest.approx(report[str(i)]["precision"], abs=1e-6)
        assert entry["recall"] == pytest.approx(report[str(i)]["recall"], abs=1e-6)
        assert entry["f1"] == pytest.approx(report[str(i)]["f1-score"], abs=1e-6)
        assert entry["support"] == report[str(i)]["support"]
    assert (confusion_matrix(predictions, 15) == sk.confusion_matrix(y, p, labels=range(15))).all()
    top5 = sk.top_k_accuracy_score(y, predictions.probabilities, k=5, labels=range(15))
    assert ours["top5_accuracy"] == pytest.approx(top5, abs=1e-6)


def overconfident(n: int = 6000, true_temperature: float = 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits `true_temperature` times too sharp: labels drawn from softmax(z), the model says 3z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=1.5, size=(n, 15))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(15, p=row) for row in p])
    return z * true_temperature, labels


def test_temperature_scaling_recovers_the_overconfidence_and_lowers_the_ece(tmp_path):
    import dataclasses

    import torch

    from posevit.evaluate.plots import plot_reliability
    from posevit.train.calibrate import fit_temperature

    logits, labels = overconfident()
    temperature = fit_temperature(torch.from_numpy(logits).float(), torch.from_numpy(labels))
    assert temperature == pytest.approx(3.0, rel=0.1)
    predictions = Predictions(ids=[str(i) for i in range(len(labels))], targets=labels, logits=logits)
    before = compute_metrics(predictions, 15, 0.95)
    predictions = dataclasses.replace(predictions, temperature=temperature)  # frozen: cached softmax stays right
    after = compute_metrics(predictions, 15, 0.95)
    assert after["ece"] < 0.03 < 0.1 < before["ece"] == before["ece_uncalibrated"] == after["ece_uncalibrated"]
    assert after["temperature"] == round(temperature, 6) and after["accuracy"] == before["accuracy"]
    # torchmetrics' ECE, by hand from the same bins the reliability diagram draws
    from posevit.evaluate.plots import reliability_bins

    confidence, accuracy, counts = reliability_bins(predictions.probabilities, labels, 15)
    assert float((np.abs(confidence - accuracy) * counts).sum() / counts.sum()) == pytest.approx(after["ece"], abs=1e-4)
    plot_reliability(predictions.probabilities, predictions.uncalibrated, labels, temperature, tmp_path / "r.png", 15)
    assert (tmp_path / "r.png").stat().st_size > 10_000


def scipy_bounded_temperature(logits: torch.Tensor, labels: torch.Tensor, low: float, high: float) -> float:
    """The reference: SciPy's bounded minimisation of the NLL over log T, in float64."""
    import math

    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(logits.double() / math.exp(log_t), labels))

    found = minimize_scalar(nll, bounds=(math.log(low), math.log(high)), method="bounded", options={"xatol": 1e-9})
    return math.exp(found.x)


def test_a_model_at_chance_gets_the_upper_bound_and_one_warning_line(caplog):
    """The smoke run's case: confident logits that say nothing (accuracy at chance) once fitted T = 4193.9."""
    import logging

    from posevit.train.calibrate import TEMPERATURE_RANGE, calibrated_temperature

    generator = torch.Generator().manual_seed(0)
    logits = 6 * torch.randn(960, 15, generator=generator)
    labels = torch.randint(0, 15, (960,), generator=generator)
    with caplog.at_level(logging.INFO, logger="posevit"):
        temperature = calibrated_temperature(logits, labels)
    assert temperature == TEMPERATURE_RANGE[1] == 20.0
    assert temperature == pytest.approx(scipy_bounded_temperature(logits, labels, *TEMPERATURE_RANGE), rel=1e-3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert "cannot help" in warnings[0] and "near chance (0.067)" in warnings[0] and "T=20" in warnings[0]


def test_confident_logits_are_calibrated_inside_the_range_without_a_warning(caplog):
    import logging

    from posevit.train.calibrate import TEMPERATURE_RANGE, calibrated_temperature, fit_temperature

    rng = np.random.default_rng(1)
    z = rng.normal(scale=4.0, size=(960, 15))
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = torch.from_numpy(np.array([rng.choice(15, p=row) for row in p]))
    logits = torch.from_numpy(2.5 * z).float()  # right most of the time, 2.5 times too sure
    assert float((logits.argmax(1) == labels).float().mean()) > 0.6
    with caplog.at_level(logging.INFO, logger="posevit"):
        temperature = calibrated_temperature(logits, labels)
    assert temperature == pytest.approx(2.5, rel=0.1)
    reference = scipy_bounded_temperature(logits, labels, *TEMPERATURE_RANGE)
    assert fit_temperature(logits, labels) == pytest.approx(reference, rel=1e-3)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "temperature 2." in caplog.text and "NLL" in caplog.text


def test_a_perfectly_separated_split_or_a_temperature_at_a_bound_says_it_is_no_fit():
    from posevit.train.calibrate import calibration_warning, fit_temperature

    labels = torch.arange(60) % 15
    logits = torch.nn.functional.one_hot(labels, 15).float() * 3  # every image right by the same margin
    temperature = fit_temperature(logits, labels)
    assert 0.05 <= temperature < 0.5  # the free minimum is at T -> 0
    assert "every validation image is right" in calibration_warning(temperature, logits, labels)
    logits[:6] = logits[:6].roll(1, dims=1)  # 90% right
    assert "lower bound 0.05" in calibration_warning(0.05, logits, labels)
    assert "upper bound 20" in calibration_warning(20.0, logits, labels)
    assert calibration_warning(1.3, logits, labels) is None


def test_a_bundles_temperature_calibrates_what_the_predictor_serves(tmp_path):
    import torch

    from posevit.infer.torch_predictor import TorchPredictor
    from posevit.models.bundle import load_bundle
    from tests.helpers.bundles import tiny_bundle

    plain = TorchPredictor(load_bundle(tiny_bundle(tmp_path / "plain", seed=2, head_scale=20.0)))
    warm = TorchPredictor(load_bundle(tiny_bundle(tmp_path / "warm", seed=2, head_scale=20.0, temperature=4.0)))
    pixels = torch.randn(3, 3, 96, 96).numpy()
    sharp, soft = plain.forward(pixels), warm.forward(pixels)
    assert (sharp.argmax(1) == soft.argmax(1)).all() and (soft.max(1) < sharp.max(1)).all()
    expected = torch.softmax(torch.log(torch.from_numpy(sharp)) / 4.0, dim=1).numpy()  # log-softmax shifts cancel
    assert np.allclose(soft, expected, atol=1e-5)


def test_wilson_interval_matches_reference_values():
    low, high = wilson_interval(50, 100, 0.95)  # reference: statsmodels proportion_confint(method="wilson")
    assert (low, high) == (pytest.approx(0.403832, abs=1e-6), pytest.approx(0.596168, abs=1e-6))
    low, high = wilson_interval(100, 100, 0.95)
    assert high == 1.0 and low == pytest.approx(0.963007, abs=1e-6)


def test_hardest_confusions_are_sorted_and_exclude_the_diagonal(predictions):
    pairs = hardest_confusions(confusion_matrix(predictions, 15), NAMES, top=5)
    counts = [pair["count"] for pair in pairs]
    assert counts == sorted(counts, reverse=True) and all(pair["true"] != pair["predicted"] for pair in pairs)


def test_workbook_numbers_equal_the_metrics(tmp_path, predictions):
    metrics = compute_metrics(predictions, 15, 0.95)
    matrix = confusion_matrix(predictions, 15)
    path = tmp_path / "report.xlsx"

    def write(target: Path) -> None:
        write_report(
            target,
            metrics=metrics,
            per_class=per_class_metrics(predictions, NAMES),
            matrix=matrix,
            confusions=hardest_confusions(matrix, NAMES),
            predictions=predictions,
            names=NAMES,
            about={"model_name": "vit_convstem_tiny", "model_version": "abc123"},
        )

    write(path)
    check_workbook(path, metrics)
    book = openpyxl.load_workbook(path)
    confusion = [[cell.value for cell in row] for row in book["Confusion matrix"].iter_rows(min_row=2, min_col=2)]
    assert np.array_equal(np.asarray(confusion), matrix)
    misclassified = list(book["Misclassified"].iter_rows(min_row=2, values_only=True))
    assert len(misclassified) == int((predictions.predicted != predictions.targets).sum())
    assert book["Per class"]._charts, "the per-class chart is missing"

    time.sleep(1.1)  # a later second: the same evaluation must still give the same bytes
    again = tmp_path / "again.xlsx"
    write(again)
    assert again.read_bytes() == path.read_bytes()


def bundle_config(labels: list[str]) -> BundleConfig:
    data_config = DataConfig(
        input_size=[3, 96, 96], interpolation="bicubic", mean=[0.5] * 3, std=[0.5] * 3, crop_pct=1.0, crop_mode="center"
    )
    return BundleConfig(model_name="vit_convstem_tiny", labels=labels, data_config=data_config)


def test_label_mismatch_names_the_classes():
    split = action_dataset(balanced_labels(1))
    bundle = Bundle(model=torch.nn.Identity(), config=bundle_config(NAMES[:14] + ["waving"]))
    with pytest.raises(
        BundleError, match=r"missing from the model: \['using_laptop'\]; unknown to the data: \['waving'\]"
    ):
        check_labels(bundle, split)
    reordered = Bundle(model=torch.nn.Identity(), config=bundle_config(NAMES[::-1]))
    with pytest.raises(BundleError, match="different order"):
        check_labels(reordered, split)
