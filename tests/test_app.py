"""`posevit serve` for real: `python app.py` on a free port (uvicorn, the page, the API together), driven by
httpx, gradio_client and headless Chromium. What needs the process: batching under concurrent HTTP load,
binding loopback, the page's login and uploads, the docs offline, credentials kept out of the real log, the
command's exits. Each route's behaviour and errors are tested in-process in tests/test_api.py."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError, AuthenticationError
from PIL import Image

from posevit.core.labels import ACTION_CLASSES
from posevit.devtools.local_s3 import free_port
from tests.helpers import ROOT
from tests.helpers.api import KEYS, photo
from tests.helpers.bundles import tiny_bundle
from tests.helpers.images import ODD_BUT_FINE, encode, exif_rotated_jpeg, png_with_declared_size
from tests.helpers.server import RunningApp

pytestmark = pytest.mark.timeout(600)
CHROMIUM = "/usr/bin/chromium"  # Debian's (make test installs it); Playwright's own download is not used
TEST_METRICS = {
    "accuracy": 0.918,
    "accuracy_ci_low": 0.902,
    "accuracy_ci_high": 0.933,
    "f1_weighted": 0.917,
    "f1_macro": 0.916,
    "n_test": 1200,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A folder laid out like a project after `dvc repro`: models/ and metrics/test.json."""
    root = tmp_path_factory.mktemp("app")
    tiny_bundle(root / "models", seed=3, head_scale=40.0)  # decisive answers: each image its own
    (root / "metrics").mkdir()
    (root / "metrics" / "test.json").write_text(json.dumps(TEST_METRICS))
    (root / "upload.png").write_bytes(encode(Image.new("RGB", (320, 240), (200, 120, 40)), "PNG"))
    return root


@pytest.fixture(scope="module")
def app(project):
    running = RunningApp(
        project, "--model", "models", "--max-file-mb", "1", "--max-batch-size", "16", "--max-wait-ms", "50"
    )
    yield running
    running.stop()


def classify(client: Client, path: Path | str, explain: bool = True):
    return client.predict(handle_file(str(path)), explain, api_name="/predict")


def test_predict_returns_every_probability_a_heat_map_and_the_time(app, project):
    client = Client(app.url, verbose=False)
    top, heat_map, timing, everything = classify(client, project / "upload.png")
    assert list(everything) == list(ACTION_CLASSES)
    assert abs(sum(everything.values()) - 1.0) < 1e-4 and all(0 <= p <= 1 for p in everything.values())
    assert top["label"] == max(everything, key=everything.get) and len(top["confidences"]) == 5
    assert Image.open(heat_map).size == (288, 288)  # the model's 96 px centre crop, coloured, shown 3x
    assert "Inference" in timing and "ms" in timing and "image 320×240" in timing
    assert f"version {httpx.get(app.url + 'v1/model').json()['version']}" in timing  # the version that answered
    _, no_heat_map, _, _ = classify(client, project / "upload.png", explain=False)
    assert no_heat_map is None


def test_odd_images_are_classified(app, tmp_path):
    client = Client(app.url, verbose=False)
    for name, make in {**ODD_BUT_FINE, "exif": exif_rotated_jpeg}.items():
        path = tmp_path / f"{name.replace(' ', '_')}.img"
        path.write_bytes(make())
        assert abs(sum(classify(client, path, explain=False)[3].values()) - 1) < 1e-4, name


@pytest.mark.parametrize(
    "name, data, error_type, message",
    [
        ("notes.txt", b"definitely not a picture", AppError, "not an image PIL can read"),
        (
            "truncated.png",
            encode(Image.effect_noise((64, 64), 80).convert("RGB"), "PNG")[:900],
            AppError,
            "Cannot use this file",
        ),
        ("bomb.png", png_with_declared_size(30000, 30000), AppError, "too large"),
        # over --max-file-mb 1: gradio_client refuses it before the upload (the server test below checks the server)
        ("huge.bmp", b"BM" + b"\0" * (1100 * 1024), ValueError, "exceeds the maximum file size"),
    ],
)
def test_bad_uploads_get_an_error_and_the_server_keeps_serving(app, project, tmp_path, name, data, error_type, message):
    client = Client(app.url, verbose=False)
    (tmp_path / name).write_bytes(data)
    with pytest.raises(error_type) as error:
        classify(client, tmp_path / name)
    assert message in str(error.value)
    assert abs(sum(classify(client, project / "upload.png", explain=False)[3].values()) - 1) < 1e-4


def test_the_server_itself_refuses_oversized_uploads(app):
    """Not only the client: a raw multipart upload over --max-file-mb is refused by the server."""
    response = httpx.post(
        app.url + "gradio_api/upload", files={"files": ("big.png", b"\0" * (1100 * 1024))}, timeout=30
    )
    assert response.status_code == 413, response.text


def test_urls_are_never_fetched_by_the_server(app, project):
    requests = []

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/person.png"
    client = Client(app.url, verbose=False)
    with pytest.raises(AppError, match="does not fetch images from URLs"):
        client.predict({"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}, True, api_name="/predict")
    with contextlib.suppress(TimeoutError):  # nothing connecting is the expected outcome
        requests.append(listener.accept())
    listener.close()
    assert requests == []
    assert abs(sum(classify(client, project / "upload.png", explain=False)[3].values()) - 1) < 1e-4


def test_binds_loopback_only_and_shows_the_model_card(app):
    port_hex = f"{app.port:04X}"
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[1].endswith(":" + port_hex) and line.split()[3] == "0A"
    ]
    assert listening == [f"0100007F:{port_hex}"]  # 127.0.0.1 only
    config = httpx.get(app.url + "config", timeout=10).json()
    card = next(c["props"]["value"] for c in config["components"] if c["props"].get("elem_id") == "model-card")
    assert "vit_convstem_tiny" in card and "0.918" in card and "0.902" in card and "local folder models" in card


def test_the_docker_healthcheck_command(app):
    """The Dockerfile's HEALTHCHECK runs `python app.py --healthcheck`: 0 while the app answers, 1 when not."""
    assert 'CMD ["python", "app.py", "--healthcheck"]' in (ROOT / "Dockerfile").read_text()
    check = [sys.executable, str(ROOT / "app.py"), "--healthcheck", "--port"]
    assert subprocess.run([*check, str(app.port)], timeout=60).returncode == 0
    assert subprocess.run([*check, str(free_port())], timeout=60).returncode == 1


def test_no_model_anywhere_exits_with_how_to_get_one(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            "POSEVIT_CACHE": str(tmp_path / "cache"),
            "AWS_EC2_METADATA_DISABLED": "true",
        },
        timeout=120,
    )
    assert result.returncode == 2
    assert "no model to serve" in result.stderr and "make demo" in result.stderr and "dvc pull" in result.stderr


def test_a_person_uploads_a_photo_in_chromium_and_sees_the_actions(app, project, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(app.url)
            page.locator("#photo input[type=file]").set_input_files(str(project / "upload.png"))
            page.locator("#classify").click()
            page.wait_for_function(
                "labels => labels.some(l => document.querySelector('#labels').innerText.includes(l))",
                arg=list(ACTION_CLASSES),
                timeout=60_000,
            )
            page.wait_for_function("document.querySelector('#timing').innerText.includes('ms')", timeout=30_000)
            shown = page.locator("#labels").inner_text()
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
        finally:
            browser.close()
    assert any(label in shown for label in ACTION_CLASSES) and "%" in shown
    assert Image.open(tmp_path / "app.png").size[0] == 1280


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [])


def test_the_api_docs_render_with_the_network_off(app):
    """Swagger UI's script and styles come from this server (fastapi-offline's files), not from a CDN."""
    from playwright.sync_api import sync_playwright

    outside: list[str] = []

    def only_this_server(route) -> None:
        if route.request.url.startswith(app.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.route("**/*", only_this_server)
            page.goto(app.url + "docs")
            operations = page.locator(".opblock-summary-path")
            operations.filter(has_text="/v1/predict/batch").wait_for(timeout=60_000)
            shown = set(operations.all_inner_texts())
        finally:
            browser.close()
    assert {"/v1/predict", "/v1/predict/batch", "/api/v1/pose_classifier", "/v1/model", "/metrics"} <= shown, shown
    assert not [url for url in outside if url.endswith((".js", ".css"))], outside


def post(server: RunningApp, data: bytes, route: str = "v1/predict", **kwargs) -> httpx.Response:
    return httpx.post(server.url + route, files={"file": ("photo.png", data)}, timeout=60, **kwargs)


def metric_value(server: RunningApp, name: str) -> float:
    for line in httpx.get(server.url + "metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_concurrent_requests_are_batched_and_each_caller_gets_its_own_answer(app):
    images = [photo(100 + i) for i in range(32)]

    def ask(image: bytes) -> np.ndarray:
        predictions = post(app, image, params={"top_k": 15}).json()["predictions"]
        return np.array([p["probability"] for p in sorted(predictions, key=lambda p: p["label"])])

    alone = [ask(image) for image in images]
    distinct = min(np.abs(a - b).sum() for i, a in enumerate(alone) for b in alone[i + 1 :])
    assert distinct > 1e-3, "the test images must get different answers"
    before = metric_value(app, "posevit_batch_size_count")
    with ThreadPoolExecutor(32) as pool:
        together = list(pool.map(ask, images))
    for i, answer in enumerate(together):
        nearest = int(np.argmin([np.abs(answer - a).sum() for a in alone]))
        assert nearest == i and np.abs(answer - alone[i]).max() < 1e-4, (i, nearest)
        assert answer.argmax() == alone[i].argmax()
    batches = metric_value(app, "posevit_batch_size_count") - before
    assert batches < 32, f"32 concurrent requests ran in {batches} forward passes: no batching happened"


def test_the_page_mount_leaves_the_api_its_errors(app):
    """Behind the page's catch-all mount at /, a GET on an upload route is still the API's JSON 405."""
    response = httpx.get(app.url + "v1/predict", timeout=30)
    assert response.status_code == 405 and "POST" in response.headers["allow"]
    assert response.json()["error"]["code"] == "http_405"
    assert httpx.get(app.url + "health/ready", timeout=30).json()["status"] == "ready"


def test_keys_and_a_login_guard_the_api_and_the_page_and_stay_out_of_the_log(project):
    first, second = KEYS.split(",")
    login = {"POSEVIT_USER": "ana", "POSEVIT_PASSWORD": "s3cret-pw"}
    running = RunningApp(project, "--model", "models", env={"POSEVIT_API_KEYS": KEYS, **login})
    try:
        assert post(running, photo(1)).status_code == 401
        wrong = post(running, photo(1), headers={"Authorization": "Bearer not-a-key"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert post(running, photo(1), route=f"v1/predict?api_key={first}").status_code == 401  # only the header counts
        for key in (first, second):
            assert post(running, photo(1), headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert httpx.get(running.url + "health/ready").status_code == 200
        assert httpx.get(running.url + "metrics").status_code == 200
        with pytest.raises(AuthenticationError, match="Please login"):
            classify(Client(running.url, verbose=False), project / "upload.png")
        healthcheck = [sys.executable, str(ROOT / "app.py"), "--healthcheck", "--port", str(running.port)]
        assert subprocess.run(healthcheck, timeout=60).returncode == 0  # the login page counts as healthy
        by_key = Client(running.url, auth=("anyone", second), verbose=False)  # any user name, a key as password
        assert by_key.view_api(return_format="dict", print_info=False)
        authed = Client(running.url, auth=("ana", "s3cret-pw"), verbose=False)
        assert len(classify(authed, project / "upload.png", explain=False)[3]) == 15
    finally:
        running.stop()
    log = running.log.read_text()
    assert first not in log and second not in log and "s3cret-pw" not in log
    assert "/v1/predict?api_key=[redacted]" in log, log  # the refused request was logged, without its key


def test_bad_settings_fail_before_serving_naming_the_key(project):
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--max-batch-size", "0"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "serve.max_batch_size = '0' is invalid" in result.stderr, result.stderr
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "POSEVIT_PORT": "99999"},
    )
    assert result.returncode == 2 and "serve.port" in result.stderr
