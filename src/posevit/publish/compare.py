"""Two versions side by side: their scores, per-class accuracy, and whether B really differs from A.

The test is McNemar's exact test on the paired per-image predictions both versions published
(`metrics/predictions.csv`): of the images exactly one of them gets right, is the split further
from 50/50 than chance allows? (the exact form is a two-sided binomial test on those discordant pairs).
It only means something on the same images, so versions scored on different test splits are refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from posevit.core.errors import PosevitError

COMPARED_METRICS = ("accuracy", "f1_weighted", "f1_macro", "top5_accuracy", "ece", "n_test")


class NotComparable(PosevitError):
    """The two versions were not scored on the same test images."""


@dataclass(frozen=True)
class McNemar:
    only_a_right: int  # images A got right and B wrong
    only_b_right: int
    both_right: int
    both_wrong: int
    p_value: float

    def verdict(self, alpha: float = 0.05) -> str:
        if self.p_value >= alpha:
            return f"no significant difference (p = {self.p_value:.3g} >= {alpha})"
        better = "B" if self.only_b_right > self.only_a_right else "A"
        return f"{better} is significantly better (p = {self.p_value:.3g} < {alpha})"


@dataclass(frozen=True)
class Comparison:
    per_class: dict[str, tuple[float, float]]  # true label -> (A's accuracy, B's accuracy) on its images
    mcnemar: McNemar


def _check_same_split(a: list[dict[str, str]], b: list[dict[str, str]]) -> None:
    ids_a, ids_b = {row["id"] for row in a}, {row["id"] for row in b}
    if ids_a != ids_b:
        raise NotComparable(
            f"the two versions were scored on different test splits ({len(ids_a)} and {len(ids_b)} images, "
            f"{len(ids_a & ids_b)} shared): a paired comparison needs the same images; the data config (data.*) "
            f"or the dataset changed between their runs"
        )
    truth_a, truth_b = {row["id"]: row["true"] for row in a}, {row["id"]: row["true"] for row in b}
    if changed := sorted(image for image in ids_a if truth_a[image] != truth_b[image]):
        raise NotComparable(
            f"the two test splits label {len(changed)} images differently (e.g. {changed[0]}): not the same data"
        )


def compare_predictions(a: list[dict[str, str]], b: list[dict[str, str]]) -> Comparison:
    """Per-class accuracy of both and McNemar's exact test, on predictions of the same test images."""
    from scipy.stats import binomtest  # the serving install has SciPy; the registry's other commands need none

    _check_same_split(a, b)
    right_b = {row["id"]: row["predicted"] == row["true"] for row in b}
    cells: Counter[tuple[bool, bool]] = Counter()
    per_label: dict[str, Counter[str]] = {}
    for row in a:
        pair = (row["predicted"] == row["true"], right_b[row["id"]])
        cells[pair] += 1
        counts = per_label.setdefault(row["true"], Counter())
        counts["n"] += 1
        counts["a"] += pair[0]
        counts["b"] += pair[1]
    only_a, only_b = cells[(True, False)], cells[(False, True)]
    p_value = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    per_class = {label: (c["a"] / c["n"], c["b"] / c["n"]) for label, c in sorted(per_label.items())}
    return Comparison(per_class, McNemar(only_a, only_b, cells[(True, True)], cells[(False, False)], float(p_value)))
