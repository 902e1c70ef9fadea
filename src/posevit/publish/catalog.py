"""What the registry holds, read back: each version's manifest, scores and per-image predictions; and deleting one.

A version's scores come from its manifest's `details` (written by the push stage: test metrics, int8
accuracy, the gate's metrics); a version published before those existed is read from its
`metrics/test.json` and `metrics/export.json` instead.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from posevit.publish.aliases import ALIASES_DIR
from posevit.publish.location import ModelAddress
from posevit.publish.registry import MANIFEST_FILE, Manifest
from posevit.publish.s3 import S3Error, is_missing, s3_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

PREDICTIONS_FILE = "metrics/predictions.csv"  # id,true,predicted,confidence: one row per test image
TEST_METRICS_FILE = "metrics/test.json"
EXPORT_METRICS_FILE = "metrics/export.json"


@dataclass(frozen=True)
class VersionInfo:
    """One complete version, as `posevit registry list/show` tell it."""

    version: str
    published_at: str
    size: int  # bytes of every file of the version
    metrics: dict[str, Any]  # metrics/test.json
    int8_accuracy: float | None
    gate: list[str]  # the metrics its push's conditions named (what promote compares)
    manifest: Manifest = field(repr=False)


def _get_json(client: S3Client, address: ModelAddress, *parts: str) -> Any:
    try:
        return json.loads(client.get_object(Bucket=address.bucket, Key=address.key(*parts))["Body"].read())
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def int8_accuracy(export_metrics: dict[str, Any] | None) -> float | None:
    value = (export_metrics or {}).get("onnx_int8", {}).get("accuracy")
    return None if value is None else float(value)


def read_version(client: S3Client, address: ModelAddress, version: str) -> VersionInfo:
    """The version's manifest and scores; S3Error when it is not a complete published version."""
    with s3_errors(client, f"reading {address.uri(version)}", address.bucket):
        try:
            response = client.get_object(Bucket=address.bucket, Key=address.key(version, MANIFEST_FILE))
        except ClientError as exc:
            if is_missing(exc):
                raise S3Error(
                    f"{address.uri(version)} is not a complete published version (no {MANIFEST_FILE}): "
                    f"`posevit registry list {address.uri()}` shows what is there"
                ) from None
            raise
        manifest: Manifest = json.loads(response["Body"].read())
        details = manifest.get("details", {})
        metrics = details.get("metrics")
        if metrics is None and TEST_METRICS_FILE in manifest["files"]:
            metrics = _get_json(client, address, version, TEST_METRICS_FILE)
        if "int8_accuracy" in details:
            int8 = details["int8_accuracy"]
        elif EXPORT_METRICS_FILE in manifest["files"]:
            int8 = int8_accuracy(_get_json(client, address, version, EXPORT_METRICS_FILE))
        else:
            int8 = None
    return VersionInfo(
        version=version,
        published_at=manifest.get("published_at") or response["LastModified"].strftime("%Y-%m-%dT%H:%M:%SZ"),
        size=sum(entry["size"] for entry in manifest["files"].values()),
        metrics=metrics or {},
        int8_accuracy=int8,
        gate=list(details.get("gate", ["accuracy"])),  # before gates were recorded: the default bar's metric
        manifest=manifest,
    )


def version_names(client: S3Client, address: ModelAddress) -> list[str]:
    """Every folder under the model's prefix that may be a version (complete or not)."""
    prefix = address.key() + "/"
    names = []
    with s3_errors(client, f"listing {address.uri()}/", address.bucket):
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=address.bucket, Prefix=prefix, Delimiter="/"
        ):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"].removeprefix(prefix).strip("/")
                if name != ALIASES_DIR:
                    names.append(name)
    return names


def list_versions(client: S3Client, address: ModelAddress) -> list[VersionInfo]:
    """Every complete version, newest first (a folder without its manifest is no version yet, or any more)."""
    found = []
    for name in version_names(client, address):
        try:
            found.append(read_version(client, address, name))
        except S3Error as exc:
            if "not a complete published version" not in str(exc):
                raise
    return sorted(found, key=lambda info: (info.published_at, info.version), reverse=True)


def read_predictions(client: S3Client, address: ModelAddress, info: VersionInfo) -> list[dict[str, str]]:
    """The version's per-image test predictions (id, true, predicted, confidence)."""
    if PREDICTIONS_FILE not in info.manifest["files"]:
        raise S3Error(
            f"{address.uri(info.version)} was published without {PREDICTIONS_FILE} (before the push stage "
            f"published per-image predictions): publish it again from its run to compare it image by image"
        )
    with s3_errors(client, f"reading {address.uri(info.version, PREDICTIONS_FILE)}", address.bucket):
        body = client.get_object(Bucket=address.bucket, Key=address.key(info.version, PREDICTIONS_FILE))["Body"]
        return list(csv.DictReader(io.StringIO(body.read().decode("utf-8"))))


def delete_version(client: S3Client, address: ModelAddress, version: str) -> int:
    """Delete a version, its manifest first: from the first request on, no fetch takes it for complete.
    Returns how many objects were deleted."""
    prefix = address.key(version) + "/"
    with s3_errors(client, f"deleting {address.uri(version)}", address.bucket):
        client.delete_object(Bucket=address.bucket, Key=address.key(version, MANIFEST_FILE))
        deleted = 1
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=address.bucket, Prefix=prefix):
            objects: list[ObjectIdentifierTypeDef] = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                client.delete_objects(Bucket=address.bucket, Delete={"Objects": objects, "Quiet": True})
                deleted += len(objects)
    return deleted
