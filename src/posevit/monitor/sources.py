"""The two sides of the comparison: the logged answers of one version, and that version's test-split answers.

LOG        a folder of the prediction log, one of its Parquet files, or its s3://BUCKET/PREFIX
REFERENCE  a model URI (s3://BUCKET/PREFIX/NAME@VERSION or :latest, registry[:VERSION]): its published
           metrics/predictions.csv, fetched and verified through the registry; or that CSV as a file
           (the evaluate stage's plots/predictions.csv: id,true,predicted,confidence)
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from posevit.core.errors import PosevitError
from posevit.core.paths import PREDICTIONS_CSV, cache_root

if TYPE_CHECKING:
    from posevit.publish.registry import ModelAddress

PUBLISHED_PREDICTIONS = "metrics/predictions.csv"  # where the push stage puts PREDICTIONS_CSV in a version
CSV_COLUMNS = ("id", "true", "predicted", "confidence")


class MonitorError(PosevitError):
    """The log or the reference cannot be read, or they do not fit together."""


@dataclass(frozen=True)
class Answers:
    """Top-1 answers: the predicted label and its probability, with the UTC day of each (None: no days)."""

    labels: np.ndarray  # (n,) str
    confidence: np.ndarray  # (n,) float
    days: np.ndarray | None = None  # (n,) datetime64[D]

    def __len__(self) -> int:
        return len(self.labels)

    def on(self, day: date) -> Answers:
        assert self.days is not None
        keep = self.days == np.datetime64(day, "D")
        return Answers(self.labels[keep], self.confidence[keep], self.days[keep])


@dataclass(frozen=True)
class Reference:
    answers: Answers
    version: str | None  # the registry version it belongs to (None for a file)
    source: str


# -- the prediction log -------------------------------------------------------------------------------
def _log_tables(where: str) -> list[pa.Table]:
    if where.startswith("s3://"):
        return _s3_log_tables(where)
    path = Path(where)
    if path.is_file():
        return [pq.read_table(path)]
    if not path.is_dir():
        raise MonitorError(f"{where}: no such prediction log (a folder or file of serve.prediction_log, or s3://...)")
    # Hidden names are files still being written (`.name.partial`): a reader never takes them.
    files = sorted(p for p in path.rglob("*.parquet") if not any(part.startswith(".") for part in p.parts))
    return [pq.read_table(file) for file in files]


def _s3_log_tables(where: str) -> list[pa.Table]:
    from posevit.publish.s3 import make_client, s3_errors

    bucket, _, prefix = where.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    client = make_client()
    tables = []
    with s3_errors(client, f"reading the prediction log {where}", bucket):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if item["Key"].endswith(".parquet"):
                    body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                    tables.append(pq.read_table(io.BytesIO(body)))
    return tables


def read_log(where: str) -> dict[str, Answers]:
    """The logged answers by model version."""
    tables = _log_tables(where)
    if not tables or sum(table.num_rows for table in tables) == 0:
        raise MonitorError(f"{where}: the prediction log holds no records yet (is serve.prediction_log set?)")
    columns = ["time", "model_version", "labels", "probabilities"]
    try:
        table = pa.concat_tables([t.select(columns) for t in tables], promote_options="permissive")
    except KeyError as exc:
        raise MonitorError(f"{where}: a file there is no prediction log (it lacks {exc})") from None
    versions = table["model_version"].to_numpy(zero_copy_only=False).astype(str)
    labels = pc.list_element(table["labels"], 0).to_numpy(zero_copy_only=False).astype(str)
    confidence = pc.list_element(table["probabilities"], 0).to_numpy(zero_copy_only=False).astype(float)
    days = table["time"].to_numpy(zero_copy_only=False).astype("datetime64[D]")  # UTC: the log's times are UTC
    return {
        version: Answers(labels[versions == version], confidence[versions == version], days[versions == version])
        for version in sorted(set(versions))
    }


# -- the reference --------------------------------------------------------------------------------
def read_predictions_csv(path: Path, source: str, version: str | None = None) -> Reference:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise MonitorError(f"{source}: cannot read it ({exc.strerror})") from None
    if not rows or any(column not in rows[0] for column in CSV_COLUMNS):
        raise MonitorError(
            f"{source}: not a predictions table (want the columns {','.join(CSV_COLUMNS)}, as the evaluate stage "
            f"writes {PREDICTIONS_CSV})"
        )
    try:
        confidence = np.array([float(row["confidence"]) for row in rows])
    except ValueError as exc:
        raise MonitorError(f"{source}: a confidence is not a number ({exc})") from None
    return Reference(Answers(np.array([row["predicted"] for row in rows]), confidence), version, source)


def _registry_location(spec: str) -> tuple[ModelAddress, str, str | None, str | None]:
    """(address, version, endpoint_url, region) of a model URI, parsed as `posevit serve --model` parses it."""
    from posevit.infer.model_source import parse_s3_uri, project_registry

    if spec.startswith("s3://"):
        address, version = parse_s3_uri(spec)
        return address, version, None, None
    address, endpoint_url, region = project_registry()
    return address, spec.partition(":")[2] or "latest", endpoint_url, region


def read_reference(spec: str) -> Reference:
    """The test-split predictions a model URI published (verified against its manifest), or a CSV file."""
    if not (spec.startswith("s3://") or spec == "registry" or spec.startswith("registry:")):
        return read_predictions_csv(Path(spec), spec)
    from posevit.publish.registry import NotPublished, fetch_model
    from posevit.publish.s3 import make_client

    address, version, endpoint_url, region = _registry_location(spec)
    try:
        folder = fetch_model(
            make_client(endpoint_url, region),
            address,
            version,
            cache_root() / "registry",
            progress=False,
            files=[PUBLISHED_PREDICTIONS],
        )
    except NotPublished as exc:
        raise MonitorError(
            f"{exc}: its push predates per-image predictions; compare against the evaluate stage's "
            f"{PREDICTIONS_CSV} of that model instead (--reference {PREDICTIONS_CSV})"
        ) from None
    return read_predictions_csv(folder / PUBLISHED_PREDICTIONS, f"{address.uri(folder.name)}/", folder.name)
