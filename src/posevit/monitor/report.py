"""The drift report: a short Markdown page (report.md) with its plot (drift.png), in the output folder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from posevit.core.config import MonitorConfig
from posevit.monitor.drift import Comparison, Drift
from posevit.monitor.sources import Answers

REPORT_FILE, PLOT_FILE = "report.md", "drift.png"


def _row(c: Comparison) -> str:
    verdict = "; ".join(m.split(":")[0] for m in c.moved) if c.moved else ("ok" if c.judged else "too few to judge")
    return (
        f"| {c.period} | {c.records} | {c.psi:.3f} | {c.chi2_p:.2g} | {c.ks_statistic:.3f} | {c.ks_p:.2g} "
        f"| {c.low_share:.1%} | {'**' + verdict + '**' if c.moved else verdict} |"
    )


def markdown(drift: Drift, log_source: str, reference_source: str, cfg: MonitorConfig) -> str:
    status = f"**ALERT**: {len(drift.alerts)} finding(s)" if drift.alerts else "**no drift** past the thresholds"
    lines = [
        f"# Drift report: version {drift.version}",
        "",
        f"{status}. Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `posevit monitor`.",
        "",
        f"- log: `{log_source}`, {drift.overall.records} answers of version {drift.version}",
        f"- reference: `{reference_source}`, {drift.reference_records} test-split answers, "
        f"{drift.reference_low_share:.1%} of them under {cfg.low_confidence:g}",
        f"- thresholds: PSI > {cfg.max_psi:g}, Kolmogorov-Smirnov statistic > {cfg.max_ks_statistic:g}, "
        f"low-confidence share up > {cfg.max_low_confidence_increase:.0%}, each only with p < {cfg.min_p_value:g}; "
        f"days of fewer than {cfg.min_records} answers are not judged",
        "",
    ]
    if drift.alerts:
        lines += ["## What moved", "", *(f"- {period}: {moved}" for period, moved in drift.alerts), ""]
    lines += [
        "## Day by day",
        "",
        "| period | answers | class PSI | chi-square p | KS statistic | KS p | low-confidence share | verdict |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        _row(drift.overall),
        *(_row(day) for day in drift.days),
        "",
        f"![class shares, confidence and the daily figures]({PLOT_FILE})",
        "",
    ]
    return "\n".join(lines)


def plot(drift: Drift, reference: Answers, logged: Answers, cfg: MonitorConfig, path: Path) -> None:
    figure = Figure(figsize=(15, 4.5), layout="constrained")
    shares_axes, confidence_axes, daily_axes = figure.subplots(1, 3)
    classes = list(drift.overall.shares)
    where = np.arange(len(classes))
    shares = np.array(list(drift.overall.shares.values()))
    shares_axes.barh(where - 0.2, shares[:, 0], 0.4, label="test split")
    shares_axes.barh(where + 0.2, shares[:, 1], 0.4, label="logged")
    shares_axes.set(yticks=where, yticklabels=classes, xlabel="share of answers", title="Predicted class")
    shares_axes.invert_yaxis()
    shares_axes.legend()
    for answers, label in ((reference, "test split"), (logged, "logged")):
        values = np.sort(answers.confidence)
        confidence_axes.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=label)
    confidence_axes.axvline(cfg.low_confidence, color="grey", linestyle=":", label="low confidence")
    confidence_axes.set(xlabel="top-1 probability", ylabel="share of answers at or under", title="Confidence (ECDF)")
    confidence_axes.legend()
    days = [day.period for day in drift.days]
    daily_axes.plot(days, [day.psi for day in drift.days], marker="o", label="class PSI")
    daily_axes.plot(days, [day.ks_statistic for day in drift.days], marker="s", label="KS statistic")
    daily_axes.plot(days, [day.low_share for day in drift.days], marker="^", label="low-confidence share")
    daily_axes.axhline(cfg.max_psi, color="C0", linestyle=":")
    daily_axes.axhline(drift.reference_low_share, color="C2", linestyle=":")
    daily_axes.set(title="Day by day (dotted: PSI bar, reference low share)", xlabel="day (UTC)")
    daily_axes.tick_params(axis="x", labelrotation=45)
    daily_axes.legend()
    figure.suptitle(f"version {drift.version}: " + ("ALERT" if drift.alerts else "no drift past the thresholds"))
    figure.savefig(path, dpi=100)


def write_report(
    drift: Drift, reference: Answers, logged: Answers, log_source: str, reference_source: str, cfg: MonitorConfig
) -> Path:
    cfg.report_dir.mkdir(parents=True, exist_ok=True)
    plot(drift, reference, logged, cfg, cfg.report_dir / PLOT_FILE)
    report = cfg.report_dir / REPORT_FILE
    report.write_text(markdown(drift, log_source, reference_source, cfg), encoding="utf-8")
    return report
