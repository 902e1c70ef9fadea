"""Compare a version's logged predictions with its own test-split predictions, and alert when they moved.

    posevit monitor LOG --reference s3://BUCKET/PREFIX/NAME@VERSION   the version's published predictions
    posevit monitor LOG --reference registry:latest                   inside the project: the push.* registry
    posevit monitor LOG --reference plots/predictions.csv --version V the evaluate stage's file

LOG is what serve.prediction_log names: a folder, one of its Parquet files, or s3://BUCKET/PREFIX. The
answers of one version (the reference's, else --version, else the log's only one) are compared with the
reference on the class distribution (chi-square, PSI), the confidence (Kolmogorov-Smirnov) and the share
of low-confidence answers, for the whole log and day by day (UTC). It writes report.md and drift.png to
--report-dir and prints what moved. Exit status: 0 nothing past the thresholds, 1 drift (for cron and CI to
alert on), 2 a bad flag, log or reference.
"""

from __future__ import annotations

import argparse

from posevit.core.config import MonitorConfig
from posevit.core.entrypoint import CommandParser, run_command
from posevit.core.settings import add_setting_flags, load_settings
from posevit.monitor.drift import judge
from posevit.monitor.report import write_report
from posevit.monitor.sources import Answers, MonitorError, read_log, read_reference

DRIFT = 1  # the exit status that means "look at the report"


def parse_args(argv: list[str] | None) -> tuple[str, MonitorConfig]:
    parser = CommandParser(
        prog="posevit monitor",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    parser.add_argument("log", metavar="LOG", help="the prediction log: a folder, a Parquet file or s3://BUCKET/PREFIX")
    add_setting_flags(parser, MonitorConfig, MonitorConfig.section)
    flags = vars(parser.parse_args(argv))
    return flags.pop("log"), load_settings(MonitorConfig, MonitorConfig.section, flags)


def pick_version(wanted: str | None, logged: dict[str, Answers], log_source: str) -> str:
    held = ", ".join(f"{version} ({len(answers)} answers)" for version, answers in logged.items())
    if wanted is None:
        if len(logged) > 1:
            raise MonitorError(f"{log_source} holds several versions, {held}: name one with --version")
        return next(iter(logged))
    if wanted not in logged:
        raise MonitorError(f"{log_source} has no answers of version {wanted}; it holds {held}")
    return wanted


def monitor(argv: list[str] | None) -> int:
    log_source, cfg = parse_args(argv)
    if cfg.reference is None:
        raise MonitorError(
            "say what to compare with: --reference MODEL_URI (its metrics/predictions.csv) or a predictions.csv file"
        )
    reference = read_reference(cfg.reference)
    logged = read_log(log_source)
    version = pick_version(cfg.version or reference.version, logged, log_source)
    drift = judge(reference.answers, logged[version], version, cfg)
    report = write_report(drift, reference.answers, logged[version], log_source, reference.source, cfg)
    for period, moved in drift.alerts:
        print(f"drift {period}: {moved}")
    verdict = f"{len(drift.alerts)} finding(s)" if drift.alerts else "no drift past the thresholds"
    print(f"version {version}, {drift.overall.records} answers over {len(drift.days)} day(s): {verdict}; see {report}")
    return DRIFT if drift.alerts else 0


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: monitor(argv))
