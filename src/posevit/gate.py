"""The quality bar a model must pass before it is published: conditions over metrics/test.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from posevit.errors import ConfigError

# Every key the evaluate stage writes to metrics/test.json; a condition may name any of them.
TEST_METRIC_KEYS = (
    "accuracy", "precision_weighted", "recall_weighted", "f1_weighted",
    "precision_macro", "recall_macro", "f1_macro", "accuracy_ci_low", "accuracy_ci_high", "n_test",
)


@dataclass(frozen=True)
class ConditionResult:
    metric: str
    threshold: float
    value: float
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_metric_name(metric: str) -> None:
    if metric not in TEST_METRIC_KEYS:
        raise ConfigError(f"push.conditions: unknown metric {metric!r}; "
                          f"choose one of the keys of metrics/test.json: {', '.join(TEST_METRIC_KEYS)}")


def evaluate_conditions(metrics: dict[str, Any], conditions: list[Any]) -> list[ConditionResult]:
    """One result per condition; a condition passes when the metric is >= its threshold."""
    results = []
    for condition in conditions:
        check_metric_name(condition.metric)
        if condition.metric not in metrics:
            raise ConfigError(f"push.conditions: metrics/test.json has no {condition.metric!r}; "
                              f"rerun the evaluate stage (`dvc repro evaluate`)")
        value = float(metrics[condition.metric])
        results.append(ConditionResult(condition.metric, float(condition.threshold), value,
                                       value >= condition.threshold))
    return results
