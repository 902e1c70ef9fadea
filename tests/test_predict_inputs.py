"""`posevit predict` beyond one folder: a run killed mid-way and resumed, S3 prefixes on a real SeaweedFS,
shards of an array job, and the decode pool's order and overlap."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from posevit.core.config import Shard
from posevit.infer.decode_pool import Decoded, Decoder, decoded_batches
from posevit.infer.folders import Row
from posevit.infer.inputs import Input, select_shard, shard_of
from posevit.infer.outputs import json_line, kept_rows, partial_path
from tests.helpers.bundles import tiny_bundle
from tests.helpers.images import encode
from tests.test_predict import BROKEN, read_rows

pytestmark = pytest.mark.timeout(300)

WAIT = "m_wait.jpg"  # sorts mid-folder; a named pipe there holds the killed run until it is killed


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("model") / "models", seed=4, head_scale=8.0)


def photo(index: int) -> bytes:
    """The same bytes on every call (the killed and the uninterrupted runs read the same photos)."""
    pixels = np.random.default_rng(index).integers(0, 256, (70, 50 + 5 * index, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


def make_shoot(root: Path, pipe: bool) -> Path:
    """root/shoot/: 24 photos, a broken file, and m_wait.jpg (a named pipe when `pipe`, else a photo)."""
    shoot = root / "shoot"
    shoot.mkdir(parents=True)
    for index in range(24):
        (shoot / f"{'a' if index < 12 else 'z'}_{index:02d}.jpg").write_bytes(photo(index))
    (shoot / "b_text.jpg").write_bytes(BROKEN["text.jpg"]())
    if pipe:
        os.mkfifo(shoot / WAIT)
    else:
        (shoot / WAIT).write_bytes(photo(99))
    return root


def predict_args(model: Path, output: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "posevit.cli", "predict", "--quiet", "shoot/*.jpg", "--model", str(model),
        "--precision", "fp32", "--batch-size", "3", "--workers", "2", "--top-k", "4", "-o", output, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, model) -> dict:
    root = make_shoot(tmp_path_factory.mktemp("whole"), pipe=False)
    subprocess.run(predict_args(model, "rows.jsonl"), cwd=root, check=True, capture_output=True, timeout=240)
    return read_rows(root / "rows.jsonl")


def rows_in_order(path: Path) -> list[tuple[str, dict[str, float], str | None]]:
    return [(name, dict(top), error) for name, (top, error) in read_rows(path).items()]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_killed_run_resumed_gives_the_rows_of_an_uninterrupted_one(tmp_path, model, uninterrupted, suffix):
    root = make_shoot(tmp_path, pipe=True)
    output = root / f"rows{suffix}"
    partial = partial_path(output)
    run = subprocess.Popen(predict_args(model, output.name), cwd=root, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        header = 1 if suffix == ".csv" else 0
        while not (partial.exists() and partial.read_text().count("\n") > header):  # the first rows are written
            assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.stderr else ""
            time.sleep(0.01)
        run.send_signal(signal.SIGKILL)  # mid-run: it waits on the pipe, rows after it not yet written
        run.wait(timeout=30)
    finally:
        run.kill()
    assert not output.exists()
    written_before = partial.read_text().count("\n") - header
    assert 0 < written_before < len(uninterrupted)

    (root / "shoot" / WAIT).unlink()
    (root / "shoot" / WAIT).write_bytes(photo(99))
    resumed = subprocess.run(predict_args(model, output.name, "--resume"), cwd=root, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: {written_before} already in" in resumed.stderr
    assert not partial.exists()
    rows = rows_in_order(output)
    expected = [(name, dict(top), error) for name, (top, error) in uninterrupted.items()]
    assert [(name, error) for name, _, error in rows] == [(name, error) for name, _, error in expected]
    for (name, top, _), (_, expected_top, _) in zip(rows, expected, strict=True):
        assert top == pytest.approx(expected_top, abs=1e-6), name  # fp32: batch-exact, whatever the batches


def test_resume_cuts_a_torn_last_line_and_continues_a_finished_file(tmp_path):
    output = tmp_path / "rows.jsonl"
    whole = json_line(Row("a.jpg", [("clapping", 0.9)]))
    partial_path(output).write_text(whole + json_line(Row("b.jpg", [], "not an image"))[:20])
    assert [row.path for row in kept_rows(output, 1)] == ["a.jpg"]
    assert partial_path(output).read_text() == whole  # the torn line is gone; appending starts on a clean line

    finished = tmp_path / "done.csv"
    finished.write_text("path,label_1,probability_1,error\na.jpg,clapping,0.9,\nb.jpg,,,not an image\n")
    assert kept_rows(finished, 1) == [Row("a.jpg", [("clapping", 0.9)]), Row("b.jpg", [], "not an image")]
    assert not finished.exists() and partial_path(finished).exists()  # new inputs will be appended to it
    with pytest.raises(Exception, match="--top-k 1"):
        kept_rows(finished, 3)


def test_shards_split_the_inputs_by_path_and_a_new_file_moves_no_other(tmp_path):
    inputs = [Input(f"shoot/{index:04d}.jpg") for index in range(1000)]
    shards = [select_shard(inputs, Shard(index, 4)) for index in range(4)]
    assert sorted(item.path for shard in shards for item in shard) == [item.path for item in inputs]
    assert all(200 < len(shard) < 300 for shard in shards)  # even to within sampling noise
    grown = [Input("shoot/new.jpg"), *inputs[::-1]]  # listed later, in another order, one more file
    assert {i.path for i in select_shard(grown, Shard(1, 4))} - {"shoot/new.jpg"} == {i.path for i in shards[1]}
    assert shard_of("photos/a.jpg", 4) == 1 and shard_of("s3://bucket/photos/a.jpg", 1000) == 192  # any machine


def test_a_shard_run_classifies_exactly_its_share(tmp_path, model):
    root = make_shoot(tmp_path, pipe=False)
    args = predict_args(model, "rows.csv", "--shard", "1/3")
    result = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (root / "shoot").glob("*.jpg"))
    share = [f"shoot/{name}" for name in names if shard_of(f"shoot/{name}", 3) == 1]
    assert list(read_rows(root / "rows.csv")) == share and 0 < len(share) < len(names)
    assert f"{len(share)} input(s) in shard 1/3 of {len(names)}" in result.stderr


def test_the_pool_keeps_input_order_and_decodes_ahead_of_the_forward_pass(tmp_path):
    """Batches come back in input order; while the caller holds one batch, the next ones are decoding."""
    for index in range(12):
        (tmp_path / f"{index:02d}.jpg").write_bytes(photo(index))
    inputs = [Input(str(tmp_path / f"{index:02d}.jpg")) for index in range(12)] + [Input("gone.jpg", "missing")]
    started: list[str] = []
    lock = threading.Lock()

    def preprocess(image: Image.Image) -> np.ndarray:
        with lock:
            started.append(threading.current_thread().name)
        return np.full((1, 1, 1), image.width, dtype=np.float32)

    batches = decoded_batches(inputs, Decoder(preprocess, 10**8), batch_size=4, workers=2)
    first = next(batches)
    time.sleep(0.5)  # the caller's "forward pass": the pool works on meanwhile
    assert len(started) >= 8  # the next batch (at least) decoded during it
    rest = [decoded for batch in batches for decoded in batch]
    widths = [int(d.pixels[0, 0, 0]) for d in [*first, *rest] if d.pixels is not None]
    assert widths == [50 + 5 * index for index in range(12)]
    assert rest[-1] == Decoded(None, "missing") and all(name.startswith("decode") for name in started)


def test_an_s3_prefix_is_classified_like_the_same_files_on_disk(tmp_path, model, s3_server, bucket):
    """Objects under s3://bucket/shoot/ read through the project's client, with the endpoint and keys from
    AWS_ENDPOINT_URL_S3 and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (boto3's chain, no profile); rows keep
    the s3:// URIs; a missing object is a row, not a failure; a missing bucket stops the run."""
    root = make_shoot(tmp_path, pipe=False)
    client = s3_server.client()
    for path in sorted((root / "shoot").iterdir()):
        client.put_object(Bucket=bucket, Key=f"shoot/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket=bucket, Key="shoot/notes.txt", Body=b"not an image")
    key, secret = s3_server.credentials()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_ENDPOINT_URL_S3": s3_server.endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    local = subprocess.run(predict_args(model, "local.jsonl"), cwd=root, capture_output=True, text=True)
    assert local.returncode == 0, local.stderr
    args = predict_args(model, "s3.jsonl")
    args[args.index("shoot/*.jpg")] = f"s3://{bucket}/shoot/"
    remote = subprocess.run(
        [*args, f"s3://{bucket}/nope.jpg"], cwd=root, env=env, capture_output=True, text=True, timeout=240
    )
    assert remote.returncode == 0, remote.stderr
    assert "1 non-image file(s) skipped" in remote.stderr
    rows, expected = rows_in_order(root / "s3.jsonl"), rows_in_order(root / "local.jsonl")
    assert rows[-1] == (f"s3://{bucket}/nope.jpg", {}, "cannot read: no such object")
    assert [name for name, _, _ in rows[:-1]] == [f"s3://{bucket}/{name}" for name, _, _ in expected]
    for (name, top, error), (_, expected_top, expected_error) in zip(rows[:-1], expected, strict=True):
        assert error == expected_error and top == pytest.approx(expected_top, abs=1e-6), name

    args[args.index(f"s3://{bucket}/shoot/")] = "s3://no-such-bucket-here/shoot/"
    missing = subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=240)
    assert missing.returncode == 2 and "bucket 'no-such-bucket-here' does not exist" in missing.stderr, missing.stderr
