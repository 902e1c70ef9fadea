"""The inference server for real: a `posevit serve` process, its JSON API, micro-batching under concurrent load,
bad input, overload, timeouts, disconnects, API keys and metrics, all over HTTP."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AuthenticationError
from PIL import Image

from posevit.core.labels import ACTION_CLASSES
from tests.helpers.bundles import tiny_bundle
from tests.helpers.images import ODD_BUT_FINE, animated_gif, encode, exif_rotated_jpeg, png_with_declared_size
from tests.helpers.server import RunningApp

pytestmark = pytest.mark.timeout(600)
KEYS = "key-one-5f2c9a,key-two-77d1e0"


def photo(seed: int, size: tuple[int, int] = (120, 96)) -> bytes:
    """A distinct picture per seed (noise: a random model's answers differ between seeds)."""
    rng = np.random.default_rng(seed)
    return encode(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)), "PNG")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("server")
    tiny_bundle(root / "models", seed=3, head_scale=40.0)  # decisive answers: each image its own
    return root


@pytest.fixture(scope="module")
def server(workdir):
    running = RunningApp(
        workdir, "--model", "models", "--max-file-mb", "1", "--max-batch-size", "16", "--max-wait-ms", "50"
    )
    yield running
    running.stop()


def post(server: RunningApp, data: bytes, route: str = "v1/predict", name: str = "photo.png", **kwargs):
    return httpx.post(server.url + route, files={"file": (name, data)}, timeout=60, **kwargs)


def test_predict_answers_with_the_top_labels_and_the_model(server):
    response = post(server, photo(0), params={"top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["name"] == "vit_convstem_tiny" and len(body["model"]["version"]) == 16
    assert [p["label"] for p in body["predictions"]] == sorted(
        (p["label"] for p in body["predictions"]),
        key=lambda label: -next(q["probability"] for q in body["predictions"] if q["label"] == label),
    )
    assert len(body["predictions"]) == 3 and all(p["label"] in ACTION_CLASSES for p in body["predictions"])
    assert body["image"] == {"width": 120, "height": 96} and body["inference_ms"] > 0
    assert len(post(server, photo(0)).json()["predictions"]) == 5  # serve.top_k


def test_the_replaced_systems_route_answers_as_it_did(server):
    body = post(server, photo(1), route="api/v1/pose_classifier").json()
    assert set(body) == {"top_labels", "top_probs", "prediction_time"}
    assert len(body["top_labels"]) == len(body["top_probs"]) == 3
    assert body["top_probs"] == sorted(body["top_probs"], reverse=True) and body["prediction_time"] > 0


def test_batch_route_answers_each_file_in_order_with_its_own_error(server):
    files = [("files", ("a.png", photo(2))), ("files", ("notes.txt", b"not a picture")), ("files", ("b.png", photo(3)))]
    body = httpx.post(server.url + "v1/predict/batch", files=files, timeout=60).json()
    results = body["results"]
    assert [r["filename"] for r in results] == ["a.png", "notes.txt", "b.png"]
    assert results[0]["result"] and results[2]["result"] and results[1]["result"] is None
    assert results[1]["error"]["code"] == "not_an_image"
    alone = post(server, photo(3)).json()["predictions"]
    assert results[2]["result"]["predictions"][0]["label"] == alone[0]["label"]


def test_model_card_docs_and_health(server):
    card = httpx.get(server.url + "v1/model").json()
    assert card["name"] == "vit_convstem_tiny" and card["labels"] == list(ACTION_CLASSES)
    assert card["data_config"]["input_size"] == [3, 96, 96] and card["batching"]["max_batch_size"] == 16
    assert card["temperature"] == 1.0 and card["ema_decay"] is None  # the test bundle is not calibrated
    schema = httpx.get(server.url + "openapi.json").json()
    assert {
        "/v1/predict",
        "/v1/predict/batch",
        "/api/v1/pose_classifier",
        "/v1/model",
        "/health/live",
        "/health/ready",
        "/metrics",
    } <= set(schema["paths"])
    assert httpx.get(server.url + "docs").status_code == 200
    assert httpx.get(server.url + "health/live").json() == {"status": "alive"}
    assert httpx.get(server.url + "health/ready").json()["status"] == "ready"


def test_concurrent_requests_are_batched_and_each_caller_gets_its_own_answer(server):
    images = [photo(100 + i) for i in range(32)]
    alone = [
        np.array(
            [
                p["probability"]
                for p in sorted(
                    post(server, image, params={"top_k": 15}).json()["predictions"], key=lambda p: p["label"]
                )
            ]
        )
        for image in images
    ]
    distinct = min(np.abs(a - b).sum() for i, a in enumerate(alone) for b in alone[i + 1 :])
    assert distinct > 1e-3, "the test images must get different answers"
    before = metric_value(server, "posevit_batch_size_count")

    def ask(image: bytes) -> np.ndarray:
        predictions = post(server, image, params={"top_k": 15}).json()["predictions"]
        return np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["label"])])

    with ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, images))
    for i, answer in enumerate(together):
        nearest = int(np.argmin([np.abs(answer - a).sum() for a in alone]))
        assert nearest == i and np.abs(answer - alone[i]).max() < 1e-4, (i, nearest)
        assert answer.argmax() == alone[i].argmax()
    batches = metric_value(server, "posevit_batch_size_count") - before
    assert batches < 32, f"32 concurrent requests ran in {batches} forward passes: no batching happened"


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("notes.txt", b"definitely not a picture", 415, "not_an_image"),
        ("truncated.png", encode(Image.effect_noise((64, 64), 80).convert("RGB"), "PNG")[:900], 400, "bad_image"),
        ("empty.png", b"", 400, "bad_image"),
        ("bomb.png", png_with_declared_size(30000, 30000), 413, "too_large"),
        ("huge.bmp", b"BM" + b"\0" * (1100 * 1024), 413, "too_large"),  # over --max-file-mb 1
    ],
)
def test_bad_input_gets_a_json_error_and_the_next_request_works(server, name, data, status, code):
    response = post(server, data, name=name)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and "Traceback" not in response.text
    assert post(server, photo(5)).status_code == 200


def test_missing_field_and_urls_are_refused_without_fetching(server):
    missing = httpx.post(server.url + "v1/predict", data={"other": "x"}, timeout=30)
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "invalid_request"
    assert "`file` is missing" in missing.json()["error"]["message"]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/person.png"
    refused = httpx.post(server.url + "v1/predict", data={"file": url}, timeout=30)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "url_not_supported"
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody came to fetch it
    listener.close()


def test_a_body_over_the_cap_is_refused_before_it_is_read(server):
    big = b"\0" * (30 * 2**20)
    started = time.monotonic()
    response = httpx.post(
        server.url + "v1/predict", content=big, timeout=60, headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert time.monotonic() - started < 10


def test_an_upload_without_a_declared_length_is_refused_before_reading(server):
    def chunks():
        yield b"--x\r\nContent-Disposition: form-data; name=file; filename=p.png\r\n\r\n"
        yield photo(1)
        yield b"\r\n--x--\r\n"

    response = httpx.post(
        server.url + "v1/predict",
        content=chunks(),
        timeout=30,
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 411 and response.json()["error"]["code"] == "length_required"
    assert post(server, photo(1)).status_code == 200


def test_a_get_on_an_upload_route_is_method_not_allowed(server):
    response = httpx.get(server.url + "v1/predict", timeout=30)
    assert response.status_code == 405 and "POST" in response.headers["allow"]
    assert response.json()["error"]["code"] == "http_405"


@pytest.mark.parametrize("kind", sorted(ODD_BUT_FINE))
def test_every_odd_file_the_page_handles_gets_a_prediction_through_the_api(server, kind):
    assert post(server, ODD_BUT_FINE[kind]()).status_code == 200


def test_exif_rotation_and_animations_through_the_api(server):
    rotated = post(server, exif_rotated_jpeg(), name="rotated.jpg").json()
    assert rotated["image"] == {"width": 20, "height": 40}  # upright: EXIF orientation applied
    assert post(server, animated_gif(), name="anim.gif").status_code == 200


def test_metrics_count_requests_latency_batches_and_queue(server):
    post(server, photo(7))
    text = httpx.get(server.url + "metrics").text
    assert 'posevit_requests_total{route="/v1/predict",status="200"}' in text
    assert "posevit_request_seconds_bucket" in text and "posevit_batch_size_bucket" in text
    assert "posevit_queue_depth" in text
    assert metric_value(server, 'posevit_requests_total{route="/v1/predict",status="415"}') >= 1


def test_the_server_binds_loopback_by_default(server):
    port = f"{server.port:04X}"
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[1].endswith(":" + port) and line.split()[3] == "0A"
    ]
    assert listening == [f"0100007F:{port}"], listening


def test_overload_gets_503_with_retry_after_and_the_server_recovers(workdir):
    running = RunningApp(
        workdir, "--model", "models", "--max-queue", "2", "--max-batch-size", "1", "--max-wait-ms", "0"
    )
    try:
        rss_before = running.rss_mb()
        with ThreadPoolExecutor(48) as pool:
            responses = list(pool.map(lambda i: post(running, photo(i)), range(96)))
        statuses = [r.status_code for r in responses]
        assert 503 in statuses and 200 in statuses and set(statuses) <= {200, 503}, statuses
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.headers["retry-after"] == "1" and refused.json()["error"]["code"] == "overloaded"
        assert post(running, photo(1)).status_code == 200
        assert running.rss_mb() - rss_before < 300  # the queue is bounded: memory does not grow with the load
    finally:
        running.stop()


def test_a_request_waiting_too_long_gets_504(workdir):
    running = RunningApp(workdir, "--model", "models", "--timeout-s", "0.0001")
    try:
        slow = post(running, photo(1))
        assert slow.status_code == 504 and slow.json()["error"]["code"] == "timeout"
        assert httpx.get(running.url + "health/ready").status_code == 200
    finally:
        running.stop()


def test_a_client_that_hangs_up_leaves_the_queue_and_harms_nothing(workdir):
    # Requests arriving together make the batcher wait (up to 1 s) for more; these clients give up at 0.3 s.
    running = RunningApp(workdir, "--model", "models", "--max-wait-ms", "1000", "--max-batch-size", "64")
    try:

        def impatient(seed: int) -> str:
            try:
                httpx.post(running.url + "v1/predict", files={"file": ("p.png", photo(seed))}, timeout=0.3)
            except httpx.ReadTimeout:
                return "gave up"
            return "answered"

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(impatient, range(4)))
        gave_up = outcomes.count("gave up")
        assert gave_up >= 1, outcomes
        time.sleep(2)
        assert metric_value(running, "posevit_abandoned_total") == gave_up
        assert metric_value(running, 'posevit_rejected_total{reason="client_disconnected"}') == gave_up
        assert post(running, photo(9)).status_code == 200
    finally:
        running.stop()
    log = running.log.read_text()
    assert "Traceback" not in log, log


def test_api_keys_guard_the_api_and_the_page_but_not_health(workdir):
    running = RunningApp(workdir, "--model", "models", env={"POSEVIT_API_KEYS": KEYS})
    try:
        first, second = KEYS.split(",")
        assert post(running, photo(1)).status_code == 401
        wrong = post(running, photo(1), headers={"Authorization": "Bearer not-a-key"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        assert wrong.headers["www-authenticate"] == "Bearer"
        for key in (first, second):
            assert post(running, photo(1), headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert httpx.get(running.url + "health/ready").status_code == 200
        assert httpx.get(running.url + "metrics").status_code == 200
        with pytest.raises(AuthenticationError):
            Client(running.url, verbose=False)
        page = Client(running.url, auth=("anyone", second), verbose=False)
        assert page.view_api(return_format="dict", print_info=False)
    finally:
        running.stop()
    log = running.log.read_text()
    assert first not in log and second not in log


def test_metrics_can_require_a_key(workdir, tmp_path):
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# one key per line\nfile-key-1234\n")
    running = RunningApp(
        workdir, "--model", "models", "--api-keys-file", str(key_file), "--metrics-require-key", "true"
    )
    try:
        assert httpx.get(running.url + "metrics").status_code == 401
        authed = httpx.get(running.url + "metrics", headers={"Authorization": "Bearer file-key-1234"})
        assert authed.status_code == 200 and "posevit_requests_total" in authed.text
    finally:
        running.stop()


def test_bad_settings_fail_before_serving_naming_the_key(workdir):
    import subprocess
    import sys

    from tests.helpers import ROOT

    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--max-batch-size", "0"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "serve.max_batch_size = '0' is invalid" in result.stderr, result.stderr
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "POSEVIT_PORT": "99999"},
    )
    assert result.returncode == 2 and "serve.port" in result.stderr


def metric_value(server: RunningApp, name: str) -> float:
    for line in httpx.get(server.url + "metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_openapi_documents_the_error_shape(server):
    schema = httpx.get(server.url + "openapi.json").json()
    responses = schema["paths"]["/v1/predict"]["post"]["responses"]
    assert {"200", "413", "503"} <= set(responses)
    assert json.dumps(schema).count("ErrorBody") >= 1
