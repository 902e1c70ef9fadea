"""The quality bar a model must pass before it is published: conditions over metrics/test.json."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from posevit.core.config import PushCondition
from posevit.core.errors import ConfigError
from posevit.core.evaluation_record import TestMetrics


@dataclass(frozen=True)
class ConditionResult:
    metric: str
    threshold: float
    value: float
    passed: bool


def evaluate_conditions(metrics: TestMetrics, conditions: Sequence[PushCondition]) -> list[ConditionResult]:
    """One result per condition; a condition passes when the metric is >= its threshold.

    The config schema has already checked each metric name against `TestMetrics`.
    """
    results = []
    for condition in conditions:
        if condition.metric not in metrics:
            raise ConfigError(
                f"push.conditions: metrics/test.json has no {condition.metric!r}; "
                f"rerun the evaluate stage (`dvc repro evaluate`)"
            )
        value = float(metrics[condition.metric])  # type: ignore[literal-required]  # the schema checked the name
        results.append(
            ConditionResult(condition.metric, float(condition.threshold), value, value >= condition.threshold)
        )
    return results
