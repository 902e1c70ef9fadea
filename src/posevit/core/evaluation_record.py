"""The test metrics record (`metrics/test.json`): written by evaluate, read by the push gate, the app and the API.

Defined here, below every stage, so the config schema can check `push.conditions` against it
without importing evaluation code; `posevit.evaluate.scores.compute_metrics` builds exactly
this type (the type checker holds the two together).
"""

from __future__ import annotations

from typing import TypedDict


class TestMetrics(TypedDict):
    accuracy: float
    top5_accuracy: float
    precision_weighted: float
    recall_weighted: float
    f1_weighted: float
    precision_macro: float
    recall_macro: float
    f1_macro: float
    accuracy_ci_low: float  # Wilson interval at confidence_level
    accuracy_ci_high: float
    confidence_level: float
    ece: float  # expected calibration error (15 bins) of the probabilities served: logits / temperature
    ece_uncalibrated: float  # the same at temperature 1
    temperature: float  # fitted on the validation split by the train stage (1.0: none)
    n_test: int


# What a push condition may name: every numeric key of the record.
TEST_METRIC_KEYS: tuple[str, ...] = tuple(TestMetrics.__annotations__)
