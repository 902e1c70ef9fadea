"""The push stage's work: check the quality bar, then publish the bundle, its exports and its evidence as one version.

Failing the bar is not an error: the receipt says what was measured and why nothing was
published. An S3 problem is an error (S3Error) that leaves latest.json untouched.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

from posevit.core import paths as default_paths
from posevit.core.config import PushConfig
from posevit.core.errors import ConfigError
from posevit.core.evaluation_record import TestMetrics
from posevit.core.hashing import hash_directory
from posevit.models.bundle_config import read_bundle_config
from posevit.publish.gate import evaluate_conditions
from posevit.publish.registry import LATEST_FILE, ModelAddress, publish
from posevit.publish.s3 import make_client

log = logging.getLogger("posevit.push")


@dataclass(frozen=True)
class PushPaths:
    models: Path = default_paths.MODELS_DIR
    test_metrics: Path = default_paths.TEST_METRICS
    report: Path = default_paths.REPORT
    exports: Path = default_paths.EXPORTS_DIR
    export_metrics: Path = default_paths.EXPORT_METRICS


class ConditionRecord(TypedDict):
    value: float
    threshold: float
    passed: bool


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
    for name, path in ((default_paths.REPORT, paths.report), (default_paths.EXPORT_METRICS, paths.export_metrics)):
        if path.exists():
            files[name.as_posix()] = path
    client = make_client(cfg.endpoint_url, cfg.region)
    published = publish(client, address, receipt["version"], files, record={"metrics": metrics})
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
    return receipt
