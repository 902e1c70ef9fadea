"""The JSON API in this process, against a real predictor on a tiny bundle: every route's answer and every error
(415, 400, 413, 422, 401, 503, 504, 499, 405, 411), API keys, metrics, the body cap, and the access log's
redaction. Overload, timeouts and disconnects are made deterministic by holding the batch's forward pass
(`tests.helpers.api.Gate`). The real uvicorn process, the page and the browser are tests/test_app.py's."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image
from uvicorn.logging import AccessFormatter

from posevit.core.labels import ACTION_CLASSES
from posevit.serve.access_log import ACCESS_LOGGER, RedactCredentials, log_config, redact_credentials
from posevit.serve.api import ApiKeys, api_routes
from posevit.serve.api.guard import MULTIPART_OVERHEAD
from posevit.serve.settings import load_settings
from tests.helpers.api import KEYS, api_client, photo, tiny_model
from tests.helpers.images import ODD_BUT_FINE, animated_gif, encode, exif_rotated_jpeg, png_with_declared_size

pytestmark = pytest.mark.timeout(300)
SETTINGS = {"max_file_mb": 1, "max_batch_size": 16, "max_wait_ms": 50}  # as the server process tests run it


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def api(model):
    with api_client(model, **SETTINGS) as (client, _):
        yield client


def post(client, data: bytes, route: str = "/v1/predict", name: str = "photo.png", **kwargs) -> httpx.Response:
    return client.post(route, files={"file": (name, data)}, **kwargs)


def metric_value(client, name: str, headers: dict[str, str] | None = None) -> float:
    for line in client.get("/metrics", headers=headers).text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- the routes --------------------------------------------------------------------------------
def test_predict_answers_with_the_top_labels_and_the_model(api):
    response = post(api, photo(0), params={"top_k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["name"] == "vit_convstem_tiny" and len(body["model"]["version"]) == 16
    assert [p["label"] for p in body["predictions"]] == sorted(
        (p["label"] for p in body["predictions"]),
        key=lambda label: -next(q["probability"] for q in body["predictions"] if q["label"] == label),
    )
    assert len(body["predictions"]) == 3 and all(p["label"] in ACTION_CLASSES for p in body["predictions"])
    assert body["image"] == {"width": 120, "height": 96} and body["inference_ms"] > 0
    assert response.headers["x-model-version"] == body["model"]["version"]  # the version that answered
    assert len(post(api, photo(0)).json()["predictions"]) == 5  # serve.top_k


def test_top_k_outside_the_labels_is_refused_naming_the_bound(api):
    for top_k, words in ((0, "greater than or equal to 1"), (16, "less than or equal to 15")):
        for route in ("/v1/predict", "/api/v1/pose_classifier"):
            response = post(api, photo(0), route=route, params={"top_k": top_k})
            assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
            assert response.json()["error"]["message"] == f"`top_k`: Input should be {words}", response.text
    assert len(post(api, photo(0), params={"top_k": 15}).json()["predictions"]) == 15


def test_the_replaced_systems_route_answers_as_it_did(api):
    response = post(api, photo(1), route="/api/v1/pose_classifier")
    body = response.json()
    assert set(body) == {"top_labels", "top_probs", "prediction_time"}
    assert response.headers["x-model-version"] == api.get("/v1/model").json()["version"]  # said beside the body
    assert len(body["top_labels"]) == len(body["top_probs"]) == 3
    assert body["top_probs"] == sorted(body["top_probs"], reverse=True) and body["prediction_time"] > 0


def test_batch_route_answers_each_file_in_order_with_its_own_error(api):
    files = [("files", ("a.png", photo(2))), ("files", ("notes.txt", b"not a picture")), ("files", ("b.png", photo(3)))]
    results = api.post("/v1/predict/batch", files=files).json()["results"]
    assert [r["filename"] for r in results] == ["a.png", "notes.txt", "b.png"]
    assert results[0]["result"] and results[2]["result"] and results[1]["result"] is None
    assert results[1]["error"]["code"] == "not_an_image"
    alone = post(api, photo(3)).json()["predictions"]
    assert results[2]["result"]["predictions"][0]["label"] == alone[0]["label"]


def test_a_batch_over_max_files_is_refused_with_413(model):
    with api_client(model, max_files=2) as (client, _):
        files = [("files", (f"{i}.png", photo(i))) for i in range(3)]
        response = client.post("/v1/predict/batch", files=files)
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_many_files"
        assert "serve.max_files" in response.json()["error"]["message"]


def test_model_card_docs_and_health(api):
    card = api.get("/v1/model").json()
    assert card["name"] == "vit_convstem_tiny" and card["labels"] == list(ACTION_CLASSES)
    assert card["data_config"]["input_size"] == [3, 96, 96] and card["batching"]["max_batch_size"] == 16
    assert card["temperature"] == 1.0 and card["ema_decay"] is None  # the test bundle is not calibrated
    schema = api.get("/openapi.json").json()
    assert {
        "/v1/predict",
        "/v1/predict/batch",
        "/api/v1/pose_classifier",
        "/v1/model",
        "/health/live",
        "/health/ready",
        "/metrics",
    } <= set(schema["paths"])
    assert api.get("/docs").status_code == 200
    assert api.get("/health/live").json() == {"status": "alive"}
    assert api.get("/health/ready").json()["status"] == "ready"


def test_the_docs_pages_load_their_assets_from_this_server(api):
    for page in ("/docs", "/redoc"):
        html = api.get(page).text
        assets = [part.split('"')[0] for part in html.split('src="')[1:] + html.split('href="')[1:]]
        assert assets and all(asset.startswith("/") for asset in assets), (page, assets)  # no CDN
        for asset in assets:
            assert api.get(asset).status_code == 200, asset


def test_ready_says_503_until_the_model_is_warm(model):
    with api_client(model) as (client, service):
        service.ready = False  # as between the process start and the end of the warm-up
        response = client.get("/health/ready")
        assert response.status_code == 503 and response.json()["error"]["code"] == "not_ready"
        assert response.headers["retry-after"] == "2"


def test_openapi_documents_the_error_shape(api):
    schema = api.get("/openapi.json").json()
    responses = schema["paths"]["/v1/predict"]["post"]["responses"]
    assert {"200", "413", "503"} <= set(responses)
    assert json.dumps(schema).count("ErrorBody") >= 1


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("notes.txt", b"definitely not a picture", 415, "not_an_image"),
        ("truncated.png", encode(Image.effect_noise((64, 64), 80).convert("RGB"), "PNG")[:900], 400, "bad_image"),
        ("empty.png", b"", 400, "bad_image"),
        ("bomb.png", png_with_declared_size(30000, 30000), 413, "too_large"),
        ("huge.bmp", b"BM" + b"\0" * (1100 * 1024), 413, "too_large"),  # over max_file_mb 1
    ],
)
def test_bad_input_gets_a_json_error_and_the_next_request_works(api, name, data, status, code):
    response = post(api, data, name=name)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and "Traceback" not in response.text
    assert post(api, photo(5)).status_code == 200


def test_missing_field_and_urls_are_refused_without_fetching(api):
    missing = api.post("/v1/predict", data={"other": "x"})
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "invalid_request"
    assert "`file` is missing" in missing.json()["error"]["message"]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/person.png"
    refused = api.post("/v1/predict", data={"file": url})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "url_not_supported"
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody came to fetch it
    listener.close()


def test_a_body_over_the_cap_is_refused_before_it_is_read(api):
    response = api.post(
        "/v1/predict", content=b"\0" * (30 * 2**20), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    reads: list[int] = []

    async def receive():
        reads.append(1)
        return {"type": "http.request", "body": b"\0" * 2**20, "more_body": True}

    declared = {b"content-length": str(30 * 2**20).encode(), b"content-type": b"multipart/form-data; boundary=x"}
    messages = api.portal.call(call_asgi, api.app, "/v1/predict", receive, declared)
    assert messages[0]["status"] == 413 and reads == []  # refused on the declared length: not one byte read


def test_a_body_longer_than_it_declared_is_cut_off_at_the_cap(api):
    """A client may lie about Content-Length: the guard counts what arrives, too, and stops reading at the cap."""
    limit = api_routes(api.app.state.service).body_limits["/v1/predict"]
    head = b'--x\r\nContent-Disposition: form-data; name="file"; filename="p.png"\r\n\r\n'
    chunks = [b"\0" * 2**20] * (limit // 2**20 + 2) + [head]  # popped from the end: the part's head first
    received: list[int] = []

    async def receive():
        received.append(1)
        body = chunks.pop() if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    headers = {b"content-length": b"100", b"content-type": b"multipart/form-data; boundary=x"}
    messages = api.portal.call(call_asgi, api.app, "/v1/predict", receive, headers)
    assert messages[0]["status"] == 413 and b'"too_large"' in messages[1]["body"]
    assert len(received) <= limit // 2**20 + 2  # it stopped at the cap, not at the end of the stream


def test_an_upload_without_a_declared_length_is_refused_before_reading(api):
    def chunks():
        yield b"--x\r\nContent-Disposition: form-data; name=file; filename=p.png\r\n\r\n"
        yield photo(1)
        yield b"\r\n--x--\r\n"

    response = api.post("/v1/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert response.status_code == 411 and response.json()["error"]["code"] == "length_required"
    assert post(api, photo(1)).status_code == 200


def test_a_get_on_an_upload_route_is_method_not_allowed(api):
    for route in ("/v1/predict", "/v1/predict/batch", "/api/v1/pose_classifier"):
        response = api.get(route)
        assert response.status_code == 405 and "POST" in response.headers["allow"]
        assert response.json()["error"]["code"] == "http_405"


def test_each_upload_routes_body_cap_follows_from_its_file_parameters(model):
    with api_client(model, max_file_mb=1, max_files=4) as (client, service):
        routes = api_routes(service)
        assert routes.body_limits == {
            "/v1/predict": 2**20 + MULTIPART_OVERHEAD,
            "/api/v1/pose_classifier": 2**20 + MULTIPART_OVERHEAD,
            "/v1/predict/batch": 4 * 2**20 + MULTIPART_OVERHEAD,
        }
        assert routes.labels >= {"/v1/model", "/health/live", "/health/ready", "/metrics"}
        assert routes.label("/docs") == routes.label("/gradio_api/upload") == "page"
        over_one = [("files", (f"{i}.png", b"\0" * (700 * 1024))) for i in range(2)]  # 1.4 MB in all: fine as a batch
        assert client.post("/v1/predict/batch", files=over_one).status_code == 200
        assert client.post("/v1/predict", files={"file": ("big.png", b"\0" * (1100 * 1024))}).status_code == 413


@pytest.mark.parametrize("kind", sorted(ODD_BUT_FINE))
def test_every_odd_file_the_page_handles_gets_a_prediction_through_the_api(api, kind):
    assert post(api, ODD_BUT_FINE[kind]()).status_code == 200


def test_exif_rotation_and_animations_through_the_api(api):
    rotated = post(api, exif_rotated_jpeg(), name="rotated.jpg").json()
    assert rotated["image"] == {"width": 20, "height": 40}  # upright: EXIF orientation applied
    assert post(api, animated_gif(), name="anim.gif").status_code == 200


# -- metrics -----------------------------------------------------------------------------------
def test_metrics_count_requests_latency_batches_and_queue(api):
    post(api, photo(7))
    post(api, b"definitely not a picture", name="notes.txt")
    text = api.get("/metrics").text
    assert 'posevit_requests_total{route="/v1/predict",status="200"}' in text
    assert "posevit_request_seconds_bucket" in text and "posevit_batch_size_bucket" in text
    assert "posevit_queue_depth" in text
    assert metric_value(api, 'posevit_requests_total{route="/v1/predict",status="415"}') >= 1
    api.get("/docs")
    assert metric_value(api, 'posevit_requests_total{route="page",status="200"}') >= 1


# -- load: overload, timeouts, disconnects (the forward pass held by a Gate) --------------------
def test_overload_gets_503_with_retry_after_and_the_server_recovers(model):
    with api_client(model, gate=True, max_queue=2, max_batch_size=1, max_wait_ms=0) as (client, service):
        gate = service.model.forward
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(post, client, photo(0))
            assert gate.entered.wait(60)  # the first image is in the forward pass: the queue is empty
            queued = [pool.submit(post, client, photo(i)) for i in (1, 2)]
            wait_until(lambda: service.batcher.queue_depth == 2)
            refused = post(client, photo(3))  # the queue is full (serve.max_queue = 2)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "overloaded"
            assert service.batcher.queue_depth == 2  # bounded: memory does not grow with the load
            gate.release()
            assert [f.result().status_code for f in (first, *queued)] == [200, 200, 200]
        assert post(client, photo(1)).status_code == 200
        assert metric_value(client, 'posevit_rejected_total{reason="overloaded"}') == 1


def test_a_burst_past_the_queue_gets_only_answers_or_503s_and_memory_stays_flat(model):
    with api_client(model, max_queue=2, max_batch_size=1, max_wait_ms=0) as (client, _):
        rss_before = rss_mb()
        with ThreadPoolExecutor(48) as pool:
            statuses = [r.status_code for r in pool.map(lambda i: post(client, photo(i)), range(96))]
        assert 200 in statuses and set(statuses) <= {200, 503}, statuses
        assert rss_mb() - rss_before < 300  # the queue is bounded: memory does not grow with the load
        assert post(client, photo(1)).status_code == 200


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) / 1024


def test_a_request_waiting_too_long_gets_504(model):
    with api_client(model, gate=True, timeout_s=0.05) as (client, _):
        slow = post(client, photo(1))  # its forward pass cannot finish: the gate is closed
        assert slow.status_code == 504 and slow.json()["error"]["code"] == "timeout"
        assert client.get("/health/ready").status_code == 200


def test_a_client_that_hangs_up_leaves_the_queue_and_harms_nothing(model, caplog):
    caplog.set_level(logging.INFO)
    with api_client(model, gate=True, max_wait_ms=0) as (client, service):
        gate = service.model.forward
        hang_up = threading.Event()
        request = client.build_request("POST", "/v1/predict", files={"file": ("p.png", photo(2))})
        body = request.read()

        async def hangs_up() -> list[dict]:
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive():  # the body, then nothing until the client hangs up
                if messages:
                    return messages.pop()
                await asyncio.to_thread(hang_up.wait, 60)
                return {"type": "http.disconnect"}

            return await call_asgi(client.app, "/v1/predict", receive, dict(request.headers.raw))

        with ThreadPoolExecutor(2) as pool:
            busy = pool.submit(post, client, photo(1))
            assert gate.entered.wait(60)  # one image holds the model; the next one waits in the queue
            gone = client.portal.start_task_soon(hangs_up)
            wait_until(lambda: service.batcher.queue_depth == 1)
            hang_up.set()
            messages = gone.result(60)
            assert messages[0]["status"] == 499 and service.batcher.queue_depth == 1  # answered before its batch
            gate.release()
            assert busy.result().status_code == 200
        assert post(client, photo(9)).status_code == 200  # after it: the hung-up image was skipped on the way
        assert gate.batch_sizes == [1, 1], gate.batch_sizes
        assert metric_value(client, "posevit_abandoned_total") == 1
        assert metric_value(client, 'posevit_rejected_total{reason="client_disconnected"}') == 1
        assert metric_value(client, 'posevit_requests_total{route="/v1/predict",status="499"}') == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


def wait_until(condition, timeout: float = 60) -> None:
    """Until `condition()` holds: a state the test waits for, not a duration it guesses."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.002)


async def call_asgi(app, path: str, receive, headers: dict[bytes, bytes]) -> list[dict]:
    """One raw HTTP request to the ASGI app, with this `receive`; the messages it sent back."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower(), value) for name, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


# -- API keys ----------------------------------------------------------------------------------
def test_api_keys_guard_the_api_but_not_health(model):
    first, second = KEYS.split(",")
    with api_client(model, keys=ApiKeys.load(None, {"POSEVIT_API_KEYS": KEYS})) as (client, _):
        assert post(client, photo(1)).status_code == 401
        wrong = post(client, photo(1), headers={"Authorization": "Bearer not-a-key"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        assert wrong.headers["www-authenticate"] == "Bearer"
        in_the_url = post(client, photo(1), params={"api_key": first})
        assert in_the_url.status_code == 401  # only the header counts
        for key in (first, second):
            assert post(client, photo(1), headers={"Authorization": f"Bearer {key}"}).status_code == 200
        for route in ("/v1/predict/batch", "/api/v1/pose_classifier"):
            assert client.post(route, files={"file": ("p.png", photo(1))}).status_code == 401
        assert client.get("/v1/model").status_code == 401
        assert client.get("/v1/model", headers={"Authorization": f"Bearer {first}"}).status_code == 200
        assert client.get("/health/ready").status_code == 200
        assert client.get("/health/live").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_metrics_can_require_a_key(model, tmp_path):
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# one key per line\nfile-key-1234\n")
    flags = {"api_keys_file": str(key_file), "metrics_require_key": "true"}  # as `--api-keys-file F --metrics-...`
    settings = load_settings(flags, params=tmp_path / "no-params.yaml", environ={}).model_dump()
    with api_client(model, keys=ApiKeys.load(settings["api_keys_file"], {}), **settings) as (client, _):
        assert client.get("/metrics").status_code == 401
        authed = client.get("/metrics", headers={"Authorization": "Bearer file-key-1234"})
        assert authed.status_code == 200 and "posevit_requests_total" in authed.text


def test_a_missing_key_file_is_a_config_error_naming_the_setting(tmp_path):
    from posevit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="serve.api_keys_file = .*no such file"):
        ApiKeys.load(str(tmp_path / "nope.txt"), {})


# -- the access log ----------------------------------------------------------------------------
def access_record(target: str) -> logging.LogRecord:
    """A record exactly as uvicorn's HTTP protocols log a request line."""
    return logging.LogRecord(
        ACCESS_LOGGER,
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5555", "POST", target, "1.1", 401),
        None,
    )


@pytest.mark.parametrize("name", ["api_key", "key", "token", "access_token", "API_KEY", "api%5Fkey"])
def test_the_access_log_never_shows_a_credential_from_the_query(name):
    record = access_record(f"/v1/predict?top_k=3&{name}=s3cret-value&x=1")
    assert RedactCredentials().filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == f'127.0.0.1:5555 - "POST /v1/predict?top_k=3&{name}=[redacted]&x=1 HTTP/1.1" 401 Unauthorized'


def test_redaction_keeps_every_other_url_as_it_was():
    for target in ("/v1/predict", "/v1/predict?top_k=3", "/v1/predict?monkey=1&keys=2&token", "/a%20b?q=key"):
        assert redact_credentials(target) == target


def test_the_servers_log_config_redacts_the_access_log(tmp_path):
    """uvicorn.run gets `log_config()`: the access logger it configures carries the filter."""
    config = log_config()
    config["handlers"]["access"] = {"class": "logging.FileHandler", "filename": str(tmp_path / "access.log")}
    config["handlers"]["access"]["formatter"] = "access"
    logging.config.dictConfig(config)
    try:
        logger = logging.getLogger(ACCESS_LOGGER)
        record = access_record("/v1/predict?api_key=s3cret-value")
        logger.info(record.msg, *record.args)  # as uvicorn's protocols call it
        for handler in logger.handlers:
            handler.flush()
        logged = (tmp_path / "access.log").read_text()
        assert "s3cret-value" not in logged and "api_key=[redacted]" in logged, logged
    finally:
        for name in ("uvicorn", "uvicorn.error", ACCESS_LOGGER):
            for handler in logging.getLogger(name).handlers:
                handler.close()
            logging.getLogger(name).handlers.clear()
