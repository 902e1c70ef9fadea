"""The prediction log, in this process against a real predictor on a tiny bundle: a row per answer with the
fields it promises and nothing else by default, files rotated by count and by age and only ever seen whole,
a full queue dropping and counting rows while every request still gets its answer (the writer held by a gate,
not by the clock), low-confidence images kept by label when asked, and an s3:// prefix on the real SeaweedFS.
The benchmark that measures the log's cost at concurrency 8 runs here at a toy size (no timed assertion)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from posevit.core.config import ServeConfig
from posevit.core.errors import ConfigError, PosevitError
from posevit.core.labels import ACTION_CLASSES
from posevit.publish.s3 import make_client
from posevit.serve.prediction_log import SCHEMA, open_sink
from tests.helpers import ROOT
from tests.helpers.api import api_client, photo, tiny_model
from tests.test_api import metric_value

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("log"))


def post(client, seed: int, route: str = "/v1/predict", **kwargs):
    response = client.post(route, files={"file": ("photo.png", photo(seed))}, **kwargs)
    assert response.status_code == 200, response.text
    return response


def log_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def read_log(root: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(path) for path in log_files(root)])


class GatedSink:
    """Wraps the log's real sink: each write says it started (`entered`) and waits for the test's `release`."""

    def __init__(self, sink) -> None:
        self.sink, self.entered, self._open = sink, threading.Event(), threading.Event()

    def put(self, name: str, data: bytes) -> None:
        self.entered.set()
        assert self._open.wait(60), "the test never released the writer"
        self.sink.put(name, data)

    def release(self) -> None:
        self._open.set()


def test_every_answer_is_a_row_with_its_fields_and_no_image_or_client_by_default(model, tmp_path):
    folder = tmp_path / "log"
    with api_client(model, prediction_log=str(folder)) as (client, service):
        single = post(client, 0, params={"top_k": 3}, headers={"X-Request-ID": "req-42"}).json()
        batch = client.post("/v1/predict/batch", files=[("files", ("a.png", photo(1))), ("files", ("b", b"no"))])
        legacy = post(client, 2, route="/api/v1/pose_classifier", headers={"X-Request-ID": "../../etc/passwd"}).json()
        assert client.app.state.prediction_log.enabled
    table = read_log(folder)
    assert table.schema == SCHEMA and table.num_rows == 3  # the undecodable file of the batch is no prediction
    rows = table.to_pylist()
    first, batched, old = rows
    assert first["request_id"] == "req-42" and first["route"] == "/v1/predict"
    assert first["model_version"] == service.served.version == single["model"]["version"]
    assert first["labels"] == [p["label"] for p in single["predictions"]]
    assert first["probabilities"] == pytest.approx([p["probability"] for p in single["predictions"]], abs=1e-6)
    assert (first["width"], first["height"]) == (120, 96) and first["latency_ms"] == pytest.approx(
        single["inference_ms"], abs=0.01
    )
    assert abs(first["time"] - datetime.now(UTC)).total_seconds() < 120
    assert batched["route"] == "/v1/predict/batch" and len(batched["labels"]) == 5  # serve.top_k
    assert batch.json()["results"][0]["result"]["predictions"][0]["label"] == batched["labels"][0]
    # The legacy route's answer; a client's id that is no plain token is replaced, never used as a path.
    assert old["labels"] == legacy["top_labels"] and old["route"] == "/api/v1/pose_classifier"
    assert len(old["request_id"]) == 32 and "/" not in old["request_id"]
    # Nothing of the image and nothing of the client, unless asked.
    assert all(row["image"] is None and row["client"] is None for row in rows)
    assert [p.relative_to(folder).parts[0] for p in folder.rglob("*") if p.is_file()] == [
        f"date={first['time']:%Y-%m-%d}"
    ]


def test_the_log_is_off_by_default_and_writes_nothing(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with api_client(model) as (client, _):
        post(client, 0)
        assert not client.app.state.prediction_log.enabled
        assert metric_value(client, "posevit_prediction_log_records_total") == 0
    assert list(tmp_path.iterdir()) == []


def test_files_rotate_by_count_and_by_age_and_appear_only_when_whole(model, tmp_path):
    folder = tmp_path / "log"
    clock = [datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()]
    with api_client(model, prediction_log=str(folder), prediction_log_max_records=3, prediction_log_max_age_s=60) as (
        client,
        _,
    ):
        log = client.app.state.prediction_log
        log.now = lambda: clock[0]
        for seed in range(7):
            post(client, seed)
        log.drain()
        assert [pq.read_metadata(path).num_rows for path in log_files(folder)] == [3, 3]  # the 7th waits, open
        assert not [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".parquet"]  # no temp file left
        clock[0] += 61  # the open file has outlived max_age_s: the next row closes it first
        post(client, 7)
        log.drain()
        assert [pq.read_metadata(path).num_rows for path in log_files(folder)] == [3, 3, 1]
        assert metric_value(client, "posevit_prediction_log_records_total") == 7
    assert [pq.read_metadata(path).num_rows for path in log_files(folder)] == [3, 3, 1, 1]  # shutdown closes the last
    assert all(path.parent.name == "date=2026-03-01" for path in log_files(folder))


def test_a_full_queue_drops_and_counts_rows_and_never_fails_or_holds_a_request(model, tmp_path):
    folder = tmp_path / "log"
    settings = {"prediction_log": str(folder), "prediction_log_max_records": 1, "prediction_log_queue": 2}
    with api_client(model, **settings) as (client, _):
        log = client.app.state.prediction_log
        gate = log.sink = GatedSink(log.sink)
        try:
            post(client, 0)  # its row fills a file: the writer now waits in the gate, holding nothing queued
            assert gate.entered.wait(60)
            for seed in range(1, 6):  # two rows fit in the queue, three are dropped
                post(client, seed)
            assert metric_value(client, "posevit_prediction_log_dropped_total") == 3
        finally:
            gate.release()
        log.drain()
        assert metric_value(client, "posevit_prediction_log_errors_total") == 0
    assert read_log(folder).num_rows == 3


def test_low_confidence_images_are_kept_by_predicted_label_when_asked(model, tmp_path):
    with api_client(model) as (client, _):
        answers = {seed: post(client, seed).json()["predictions"][0] for seed in range(8)}
    threshold = sorted(answer["probability"] for answer in answers.values())[4]  # four under it, four not
    folder = tmp_path / "log"
    with api_client(model, prediction_log=str(folder), log_images="low_confidence", low_confidence=threshold) as (
        client,
        _,
    ):
        for seed in answers:
            post(client, seed, headers={"X-Request-ID": f"photo-{seed}"})
    rows = {row["request_id"]: row for row in read_log(folder).to_pylist()}
    low = {seed for seed, answer in answers.items() if answer["probability"] < threshold}
    assert len(low) == 4
    for seed, answer in answers.items():
        kept = rows[f"photo-{seed}"]["image"]
        if seed in low:
            assert kept == f"images/{answer['label']}/photo-{seed}-0.png"
            assert Image.open(folder / kept).size == (120, 96)
        else:
            assert kept is None
    assert len(list((folder / "images").rglob("*.png"))) == 4


def test_a_log_under_an_s3_prefix_uploads_closed_files_and_images(model, aws_env, bucket):
    with api_client(model) as (client, _):
        threshold = sorted(post(client, seed).json()["predictions"][0]["probability"] for seed in range(3))[1]
    settings = {"prediction_log": f"s3://{bucket}/logs/eu", "prediction_log_max_records": 2}
    with api_client(model, **settings, log_images="low_confidence", low_confidence=threshold) as (client, _):
        for seed in range(3):
            post(client, seed, headers={"X-Request-ID": f"s3-{seed}"})
    s3 = make_client()
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="logs/eu/")["Contents"])
    files = [key for key in keys if key.endswith(".parquet")]
    assert len(files) == 2 and all(key.startswith("logs/eu/date=") for key in files)
    tables = [pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) for key in files]
    rows = [row for table in tables for row in table.to_pylist()]
    assert sorted(row["request_id"] for row in rows) == ["s3-0", "s3-1", "s3-2"]
    kept = [row["image"] for row in rows if row["image"]]
    assert len(kept) == 1 and f"logs/eu/{kept[0]}" in keys and kept[0].split("/")[1] in ACTION_CLASSES


def test_a_log_that_cannot_be_written_stops_the_server_at_start_with_one_line(aws_env, tmp_path):
    with pytest.raises(PosevitError, match="bucket 'no-such-bucket' does not exist"):
        open_sink("s3://no-such-bucket/logs")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="serve.prediction_log = .*: cannot create the folder"):
        open_sink(str(tmp_path / "file" / "log"))
    with pytest.raises(ValueError, match="log_images keeps images beside the prediction log"):
        ServeConfig(log_images="low_confidence")


def test_the_benchmark_runs_both_turns_at_concurrency_8_without_a_failed_request(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.prediction_log", "--requests", "16", "--turns", "1", "--warmup", "0"],
        cwd=ROOT,
        env={**os.environ, "POSEVIT_BENCHMARK_RESULTS": str(tmp_path)},  # the committed result stays as measured
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["concurrency"] == 8 and report["failed_requests"] == 0
    assert report["without_log"]["requests"] == report["with_log"]["requests"] == 16
    assert report["logged_rows"] == report["requests_to_the_logged_server"] == 16 and report["dropped_rows"] == 0
    written = json.loads((tmp_path / "prediction_log.json").read_text())
    assert written["result"] == report
