"""The push stage's work: check the quality bar, then publish the bundle, its exports and its evidence as one version.

Failing the bar is not an error: the receipt says what was measured and why nothing was
published. An S3 problem is an error (S3Error) that leaves latest.json untouched. With push.alias
set, the alias then moves through the same gate-checked promotion as `posevit registry promote`:
a version below the alias's current one is still published (latest moves), the alias stays, and
the receipt says why.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from posevit.core import paths as default_paths
from posevit.core.config import PushConfig
from posevit.core.errors import ConfigError
from posevit.core.evaluation_record import TestMetrics
from posevit.core.hashing import hash_directory
from posevit.models.bundle_config import read_bundle_config
from posevit.publish.catalog import PREDICTIONS_FILE, int8_accuracy
from posevit.publish.gate import evaluate_conditions
from posevit.publish.promotion import PromotionRefused, promote
from posevit.publish.registry import LATEST_FILE, ModelAddress, publish
from posevit.publish.s3 import make_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("posevit.push")


@dataclass(frozen=True)
class PushPaths:
    models: Path = default_paths.MODELS_DIR
    test_metrics: Path = default_paths.TEST_METRICS
    report: Path = default_paths.REPORT
    exports: Path = default_paths.EXPORTS_DIR
    export_metrics: Path = default_paths.EXPORT_METRICS
    predictions: Path = default_paths.PREDICTIONS_CSV


class ConditionRecord(TypedDict):
    value: float
    threshold: float
    passed: bool


class AliasReceipt(TypedDict):
    name: str
    moved: bool
    why: str  # what happened: moved from where, already there, or why the gate refused it


class PushReceipt(TypedDict):
    """`metrics/push.json`."""

    pushed: bool
    version: str  # content hash of models/
    uri: str | None
    latest: str | None
    conditions: dict[str, ConditionRecord]
    skipped: NotRequired[str]  # why a model that passed was not published
    already_published: NotRequired[bool]
    files: NotRequired[int]
    not_added: NotRequired[list[str]]  # files the already published version lacks (versions never change)
    alias: NotRequired[AliasReceipt]  # push.alias's move, when set


def _folder_files(folder: Path, name: str) -> dict[str, Path]:
    """Every file under `folder` (sub-folders kept), named as it will be inside the version folder."""
    if not folder.is_dir():
        return {}
    return {
        f"{name}/{path.relative_to(folder).as_posix()}": path for path in sorted(folder.rglob("*")) if path.is_file()
    }


def read_test_metrics(path: Path) -> TestMetrics:
    if not path.exists():
        raise ConfigError(f"{path} not found: run the evaluate stage first (`dvc repro evaluate`)")
    metrics: TestMetrics = json.loads(path.read_text())
    return metrics


def push(cfg: PushConfig, paths: PushPaths = PushPaths()) -> PushReceipt:
    """Publish `paths.models` (+ test metrics and report) if it passes the bar; the receipt says what happened."""
    metrics = read_test_metrics(paths.test_metrics)
    read_bundle_config(paths.models)  # a clear error if the bundle is missing or not a bundle
    results = evaluate_conditions(metrics, cfg.conditions)
    address = ModelAddress(cfg.bucket, cfg.prefix, cfg.model_name)
    receipt = PushReceipt(
        pushed=False,
        version=hash_directory(paths.models),
        uri=None,
        latest=None,
        conditions={r.metric: ConditionRecord(value=r.value, threshold=r.threshold, passed=r.passed) for r in results},
    )
    for result in results:
        log.info(
            "%s %s = %.4f (threshold %.4f)",
            "PASS" if result.passed else "FAIL",
            result.metric,
            result.value,
            result.threshold,
        )
    if not all(result.passed for result in results):
        log.info("quality bar not met: nothing published")
        return receipt

    experiment = os.environ.get("DVC_EXP_NAME")
    if experiment and not cfg.from_experiments:
        receipt["skipped"] = (
            f"DVC experiment {experiment!r}: experiments do not publish (push.from_experiments); "
            f"promote it with `dvc exp apply {experiment}` then `dvc repro --force --single-item push`"
        )
        log.info("passed the bar, not published: %s", receipt["skipped"])
        return receipt

    files = {
        **_folder_files(paths.models, default_paths.MODELS_DIR.name),
        **_folder_files(paths.exports, default_paths.EXPORTS_DIR.name),
        default_paths.TEST_METRICS.as_posix(): paths.test_metrics,
    }
    optional = {
        default_paths.REPORT.as_posix(): paths.report,
        default_paths.EXPORT_METRICS.as_posix(): paths.export_metrics,
        PREDICTIONS_FILE: paths.predictions,  # per-image predictions: `posevit registry diff` pairs them
    }
    files |= {name: path for name, path in optional.items() if path.exists()}
    client = make_client(cfg.endpoint_url, cfg.region)
    details = {
        "metrics": metrics,
        "int8_accuracy": _int8_accuracy(paths.export_metrics),
        "gate": [condition.metric for condition in cfg.conditions],
    }
    published = publish(client, address, receipt["version"], files, record={"metrics": metrics}, details=details)
    log.info(
        "%s %s; %s now points to it",
        "already published:" if published.already_published else "published",
        published.uri,
        address.uri(LATEST_FILE),
    )
    receipt["pushed"], receipt["uri"], receipt["latest"] = True, published.uri, address.uri(LATEST_FILE)
    receipt["already_published"], receipt["files"] = published.already_published, len(files)
    if published.not_added:
        receipt["not_added"] = published.not_added
        log.warning(
            "%s was published before with fewer files and a version never changes; not added: %s. "
            "To publish them, remove the version (aws s3 rm --recursive %s) and run the push stage again",
            published.uri,
            ", ".join(published.not_added),
            published.uri,
        )
    if cfg.alias:
        receipt["alias"] = move_push_alias(client, address, receipt["version"], cfg.alias)
    return receipt


def _int8_accuracy(export_metrics: Path) -> float | None:
    return int8_accuracy(json.loads(export_metrics.read_text())) if export_metrics.is_file() else None


def move_push_alias(client: S3Client, address: ModelAddress, version: str, alias: str) -> AliasReceipt:
    """push.alias through the gate-checked promotion: a refusal keeps the alias (and the publish) and says why."""
    experiment = os.environ.get("DVC_EXP_NAME")
    message = f"push stage{f' (experiment {experiment})' if experiment else ''}"
    try:
        result = promote(client, address, version, alias, message=message)
    except PromotionRefused as exc:
        log.warning("alias %s not moved: %s", alias, exc)
        return AliasReceipt(name=alias, moved=False, why=str(exc))
    if result.record is None:
        return AliasReceipt(name=alias, moved=False, why=f"{alias} already pointed to {version}")
    log.info("alias %s: %s -> %s", alias, result.record["from_version"] or "(new)", version)
    return AliasReceipt(name=alias, moved=True, why=f"moved from {result.record['from_version'] or '(new)'}")
