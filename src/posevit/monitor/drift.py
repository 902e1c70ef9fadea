"""What moved between a version's test-split answers and its logged answers, for the whole log and day by day.

Three views of the answers, each a SciPy test for "significant" and an effect size for "large"; a view
moved when both pass their bars (monitor.*), so a big log does not alert on trivial differences nor a
small one on noise. Days with fewer than monitor.min_records records are shown but not judged.

- class distribution (the top-1 labels): chi-square test of homogeneity on the two samples' counts
  (`scipy.stats.chi2_contingency`) and the population stability index, sum((q - p) ln(q / p)) over the
  classes, with half a count added to every class so that an empty one stays finite;
- confidence (the top-1 probabilities): the two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`),
  its statistic being the effect size;
- the share of low-confidence answers (under monitor.low_confidence): a one-sided binomial test against
  the reference's share (`scipy.stats.binomtest`), and how far it rose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from posevit.core.config import MonitorConfig
from posevit.monitor.sources import Answers

SMOOTHING = 0.5  # counts added to every class for the PSI (Jeffreys): an empty class would make it infinite


@dataclass(frozen=True)
class Comparison:
    period: str  # "all" or an ISO day
    records: int
    judged: bool  # enough records to tell (monitor.min_records)
    chi2_p: float
    psi: float
    ks_statistic: float
    ks_p: float
    low_share: float
    low_p: float
    shares: dict[str, tuple[float, float]]  # class -> (reference share, logged share)
    moved: list[str] = field(default_factory=list)  # what passed its bars, in words


@dataclass(frozen=True)
class Drift:
    version: str
    reference_records: int
    reference_low_share: float
    overall: Comparison
    days: list[Comparison]

    @property
    def alerts(self) -> list[tuple[str, str]]:
        """(period, what moved) for every view past its bars, the whole log first."""
        return [(c.period, moved) for c in [self.overall, *self.days] for moved in c.moved]


def psi(reference_counts: np.ndarray, logged_counts: np.ndarray) -> float:
    expected = (reference_counts + SMOOTHING) / (reference_counts.sum() + SMOOTHING * len(reference_counts))
    actual = (logged_counts + SMOOTHING) / (logged_counts.sum() + SMOOTHING * len(logged_counts))
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _largest_changes(shares: dict[str, tuple[float, float]], count: int = 3) -> str:
    ranked = sorted(shares.items(), key=lambda item: -abs(item[1][1] - item[1][0]))[:count]
    return ", ".join(f"{label} {before:.0%} -> {after:.0%}" for label, (before, after) in ranked)


def compare(reference: Answers, logged: Answers, period: str, cfg: MonitorConfig) -> Comparison:
    classes = sorted({*reference.labels.tolist(), *logged.labels.tolist()})
    reference_counts = np.array([np.sum(reference.labels == c) for c in classes], dtype=float)
    logged_counts = np.array([np.sum(logged.labels == c) for c in classes], dtype=float)
    table = np.stack([reference_counts, logged_counts])
    table = table[:, table.sum(axis=0) > 0]
    chi2_p = float(stats.chi2_contingency(table).pvalue) if table.shape[1] > 1 else 1.0
    ks = stats.ks_2samp(logged.confidence, reference.confidence)
    reference_low = float(np.mean(reference.confidence < cfg.low_confidence))
    low_count = int(np.sum(logged.confidence < cfg.low_confidence))
    low_p = stats.binomtest(low_count, len(logged), min(max(reference_low, 1e-9), 1 - 1e-9), alternative="greater")
    shares = {
        c: (float(r / reference_counts.sum()), float(g / logged_counts.sum()))
        for c, r, g in zip(classes, reference_counts, logged_counts, strict=True)
    }
    comparison = Comparison(
        period=period,
        records=len(logged),
        judged=len(logged) >= cfg.min_records,
        chi2_p=chi2_p,
        psi=psi(reference_counts, logged_counts),
        ks_statistic=float(ks.statistic),
        ks_p=float(ks.pvalue),
        low_share=low_count / len(logged),
        low_p=float(low_p.pvalue),
        shares=shares,
    )
    if comparison.judged:
        comparison.moved.extend(_what_moved(comparison, reference, logged, reference_low, cfg))
    return comparison


def _what_moved(
    c: Comparison, reference: Answers, logged: Answers, reference_low: float, cfg: MonitorConfig
) -> list[str]:
    moved = []
    if c.chi2_p < cfg.min_p_value and c.psi > cfg.max_psi:
        moved.append(
            f"class distribution: PSI {c.psi:.2f} > {cfg.max_psi:g} (chi-square p {c.chi2_p:.2g}); "
            f"most changed: {_largest_changes(c.shares)}"
        )
    if c.ks_p < cfg.min_p_value and c.ks_statistic > cfg.max_ks_statistic:
        moved.append(
            f"confidence: Kolmogorov-Smirnov {c.ks_statistic:.2f} > {cfg.max_ks_statistic:g} (p {c.ks_p:.2g}); "
            f"median {np.median(reference.confidence):.2f} -> {np.median(logged.confidence):.2f}"
        )
    if c.low_p < cfg.min_p_value and c.low_share - reference_low > cfg.max_low_confidence_increase:
        moved.append(
            f"low-confidence share (under {cfg.low_confidence:g}): {reference_low:.0%} -> {c.low_share:.0%}, "
            f"up more than {cfg.max_low_confidence_increase:.0%} (binomial p {c.low_p:.2g})"
        )
    return moved


def judge(reference: Answers, logged: Answers, version: str, cfg: MonitorConfig) -> Drift:
    """The whole log and each of its UTC days against the reference."""
    assert logged.days is not None
    days = [compare(reference, logged.on(day), str(day), cfg) for day in sorted(set(logged.days.tolist()))]
    return Drift(
        version=version,
        reference_records=len(reference),
        reference_low_share=float(np.mean(reference.confidence < cfg.low_confidence)),
        overall=compare(reference, logged, "all", cfg),
        days=days,
    )
