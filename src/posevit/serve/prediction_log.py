"""The prediction log (serve.prediction_log): one Parquet record per answer, written off the request path.

A route hands `PredictionLog.record` what it already has (the request, the decoded image, the prediction,
the top k it answered). That builds one small row and puts it on a bounded queue without waiting: when
the queue is full the row is dropped and counted (`posevit_prediction_log_dropped`), so the log never
slows a request. One writer thread takes the rows off, keeps the low-confidence images when asked
(serve.log_images), and gathers rows into a file that it closes after serve.prediction_log_max_records
rows or serve.prediction_log_max_age_s seconds. A closed file is complete: written under a hidden
temporary name and renamed (a folder), or uploaded once closed (s3://, through the project's S3 client);
a reader never sees half a file. No image bytes and no client address are logged unless asked.

The layout, the same in a folder and under an S3 prefix (`posevit monitor` reads either):

    date=YYYY-MM-DD/predictions-<opened, UTC>-<host>-<pid>-<n>.parquet
    images/<predicted label>/<request id>-<n>.png     (serve.log_images: low_confidence)
"""

from __future__ import annotations

import io
import logging
import os
import queue
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from starlette.requests import Request

from posevit.core.config import ServeConfig
from posevit.core.errors import ConfigError
from posevit.data.images import source_size
from posevit.infer.predictor import Prediction
from posevit.serve.telemetry import ServeMetrics

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("posevit.serve")

SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("ms", tz="UTC")),
        ("request_id", pa.string()),
        ("route", pa.string()),
        ("model_version", pa.string()),
        ("labels", pa.list_(pa.string())),  # the top k answered, most probable first
        ("probabilities", pa.list_(pa.float32())),
        ("latency_ms", pa.float32()),  # waiting for the batch + the forward pass, as the response says
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image", pa.string()),  # the kept image's path under the log (serve.log_images), else null
        ("client", pa.string()),  # the client's address (serve.log_client_address), else null
    ]
)
REQUEST_ID_HEADER = "x-request-id"
SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")  # a client's id becomes a file name: nothing else is taken
IDLE_TICK_S = 1.0  # how often an idle writer checks whether its open file is due to close
WRITER_PAUSE_S = 0.05  # a busy writer wakes at most this often
MAX_PENDING_FILES = 16  # closed files kept in memory while S3 is unreachable, retried at each close


class Sink(Protocol):
    """Where closed files and kept images go; `put` makes `name` appear whole or not at all."""

    def put(self, name: str, data: bytes) -> None: ...


@dataclass(frozen=True)
class FolderSink:
    root: Path

    def put(self, name: str, data: bytes) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")  # hidden: readers of the folder skip it
        partial.write_bytes(data)
        partial.replace(path)


@dataclass(frozen=True)
class S3Sink:
    client: S3Client
    bucket: str
    prefix: str

    def put(self, name: str, data: bytes) -> None:
        from posevit.publish.s3 import s3_errors

        key = f"{self.prefix}/{name}" if self.prefix else name
        with s3_errors(self.client, f"writing the prediction log s3://{self.bucket}/{key}", self.bucket):
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)


def open_sink(where: str) -> Sink:
    """The folder or S3 prefix serve.prediction_log names, checked now (a bad one stops the server at start)."""
    if where.startswith("s3://"):
        from posevit.publish.s3 import make_client, s3_errors  # boto3 only for a log that needs it

        bucket, _, prefix = where.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError(f"serve.prediction_log = {where!r}: write s3://BUCKET/PREFIX")
        client = make_client()
        with s3_errors(client, f"checking the prediction log's bucket {bucket!r}", bucket):
            client.head_bucket(Bucket=bucket)
        return S3Sink(client, bucket, prefix.strip("/"))
    root = Path(where)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"serve.prediction_log = {where!r}: cannot create the folder ({exc.strerror})") from None
    return FolderSink(root)


def request_id(request: Request) -> str:
    """The client's X-Request-ID when it is a plain token, else a new one."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if SAFE_ID.fullmatch(given) else uuid.uuid4().hex


@dataclass
class _Row:
    values: dict[str, Any]
    image: Image.Image | None  # to keep (low confidence), encoded by the writer thread


_STOP, _FLUSH = object(), object()


class PredictionLog:
    """Off (`enabled` False, `record` returns at once) unless serve.prediction_log names where to write."""

    def __init__(self, settings: ServeConfig, metrics: ServeMetrics, now: Callable[[], float] = time.time) -> None:
        self.settings, self.metrics, self.now = settings, metrics, now
        self.enabled = settings.prediction_log is not None
        self.sink: Sink | None = open_sink(settings.prediction_log) if settings.prediction_log else None
        self._queue: queue.Queue[object] = queue.Queue(settings.prediction_log_queue)
        self._rows: list[dict[str, Any]] = []
        self._opened_at = 0.0
        self._files = 0
        self._pending: list[tuple[str, bytes, int]] = []  # closed files S3 refused, retried at the next close
        self._thread: threading.Thread | None = None
        self._name = f"{socket.gethostname()}-{os.getpid()}"

    # -- the request path ---------------------------------------------------------------------
    def record(
        self, request: Request, version: str, image: Image.Image, prediction: Prediction, top_k: int, index: int = 0
    ) -> None:
        """Queue one answer's row; never waits (a full queue drops it and counts it)."""
        if not self.enabled:
            return
        top = prediction.top(top_k)
        identifier = request.state.request_id = getattr(request.state, "request_id", None) or request_id(request)
        keep = self.settings.log_images == "low_confidence" and top[0][1] < self.settings.low_confidence
        label = re.sub(r"[^A-Za-z0-9._-]", "_", top[0][0]).lstrip(".") or "_"  # a folder name, never `..`
        client = request.client.host if self.settings.log_client_address and request.client else None
        width, height = source_size(image)  # as sent, also when decoded at reduced scale (serve.fast_decode)
        row = {
            "time": datetime.fromtimestamp(self.now(), UTC),
            "request_id": identifier,
            "route": request.url.path,
            "model_version": version,
            "labels": [name for name, _ in top],
            "probabilities": [p for _, p in top],
            "latency_ms": prediction.seconds * 1000,
            "width": width,
            "height": height,
            "image": f"images/{label}/{identifier}-{index}.png" if keep else None,
            "client": client,
        }
        try:
            self._queue.put_nowait(_Row(row, image if keep else None))
        except queue.Full:
            self.metrics.log_dropped.inc()

    # -- the writer thread --------------------------------------------------------------------
    def start(self) -> None:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def drain(self) -> None:
        """Wait until the writer has taken in every row queued so far (their file may still be open)."""
        if self._thread is not None:
            self._queue.join()

    def flush(self) -> None:
        """Close the open file now (and wait until it is written)."""
        if self._thread is not None:
            self._queue.put(_FLUSH)
            self._queue.join()

    def close(self) -> None:
        """Write what is queued, close the open file and stop the writer (the server's shutdown)."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                items = [self._queue.get(timeout=IDLE_TICK_S)]
            except queue.Empty:
                self._close_if_due()
                continue
            while True:  # everything queued meanwhile, in one go
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for item in items:
                self._handle(item)
                if item is _STOP:
                    return
            # One wake per batch of rows rather than one per answer: the GIL is the requests' too.
            time.sleep(WRITER_PAUSE_S)

    def _handle(self, item: object) -> None:
        try:
            if isinstance(item, _Row):
                self._add(item)
            elif item is _FLUSH or item is _STOP:
                self._close_file()
        except Exception:  # a writer that dies would silently stop the log: say it, count it, go on
            log.exception("prediction log: could not write")
            self.metrics.log_errors.inc()
        finally:
            self._queue.task_done()

    def _add(self, row: _Row) -> None:
        self._close_if_due()
        if row.image is not None:
            self._keep_image(row.values["image"], row.image)
        if not self._rows:
            self._opened_at = self.now()
        self._rows.append(row.values)
        if len(self._rows) >= self.settings.prediction_log_max_records:
            self._close_file()

    def _keep_image(self, name: str, image: Image.Image) -> None:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        try:
            self._put(name, buffer.getvalue())
        except Exception:
            log.exception("prediction log: could not keep %s", name)
            self.metrics.log_errors.inc()

    def _close_if_due(self) -> None:
        if self._rows and self.now() - self._opened_at >= self.settings.prediction_log_max_age_s:
            self._close_file()

    def _close_file(self) -> None:
        if self._rows:
            rows, self._rows = self._rows, []
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
            buffer = pa.BufferOutputStream()
            pq.write_table(table, buffer, compression="zstd")
            opened = datetime.fromtimestamp(self._opened_at, UTC)
            self._files += 1
            name = f"date={opened:%Y-%m-%d}/predictions-{opened:%Y%m%dT%H%M%SZ}-{self._name}-{self._files}.parquet"
            self._pending.append((name, buffer.getvalue().to_pybytes(), len(rows)))
        while len(self._pending) > MAX_PENDING_FILES:  # memory stays bounded while the sink is down
            self.metrics.log_dropped.inc(self._pending.pop(0)[2])
        while self._pending:
            name, data, count = self._pending[0]
            try:
                self._put(name, data)
            except Exception:  # S3 down or the disk full: keep it for the next close, count it
                log.exception("prediction log: could not write %s (kept, retried at the next close)", name)
                self.metrics.log_errors.inc()
                return
            self._pending.pop(0)
            self.metrics.log_records.inc(count)

    def _put(self, name: str, data: bytes) -> None:
        assert self.sink is not None
        self.sink.put(name, data)
