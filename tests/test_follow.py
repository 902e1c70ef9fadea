"""A server following a registry alias (`serve.follow`), in this process against the real SeaweedFS: the poll step
is called directly (no sleeps, no background timer), and a `Gate` holds a batch in its forward pass while a new
version is swapped in. What must hold: a moved alias is swapped in and every answer names the version that gave
it; requests in flight finish on the version they started with and the old model is released after; a version
that fails to fetch/verify or to warm up stays out, is counted and shown, and the next poll tries again. The real
processes and the moving alias under load are tests/test_follow_e2e.py's."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from starlette.testclient import TestClient

from posevit.core.config import ServeConfig
from posevit.core.errors import ConfigError
from posevit.infer.loading import open_model
from posevit.publish.registry import ModelAddress
from posevit.publish.s3 import make_client
from posevit.serve.api import ApiKeys, create_api
from posevit.serve.follow import ModelFollower, followed_pointer
from posevit.serve.pointer import Pointer, alias_of, pointer_of, read_pointer
from posevit.serve.service import InferenceService
from posevit.serve.settings import load_settings
from tests.helpers.api import Gate, photo
from tests.helpers.registry_versions import TestRegistry

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def registry(aws_env, bucket, tmp_path, monkeypatch) -> TestRegistry:
    monkeypatch.setenv("POSEVIT_CACHE", str(tmp_path / "cache"))
    return TestRegistry(make_client(), ModelAddress(bucket, "registry", "posevit"), tmp_path)


@contextmanager
def following(model: str, **settings: object) -> Iterator[tuple[TestClient, InferenceService]]:
    """A started API serving `model` (an alias), with its follower attached; its timer waits an hour, so only the
    test's own `poll` calls move it. The service holds the only reference to the model (none stays here)."""
    config = ServeConfig.model_validate({"model": model, "follow": 3600, "max_wait_ms": 0, **settings})
    service = InferenceService(*reversed(open_model(config)), config)
    service.follower = ModelFollower(service, followed_pointer(config))
    app = create_api(service, ApiKeys([]))
    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        yield client, service


def poll(client: TestClient, service: InferenceService) -> str:
    """One poll step, run on the server's own event loop."""
    assert service.follower is not None
    return client.portal.call(service.follower.poll)


def post(client: TestClient, seed: int, route: str = "/v1/predict") -> httpx.Response:
    return client.post(route, files={"file": ("p.png", photo(seed))})


def metric(client: TestClient, line_start: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def wait_until(condition, timeout: float = 60) -> None:
    """Until `condition()` holds: a state the test waits for, not a duration it guesses."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.002)


def test_a_moved_alias_is_swapped_in_and_every_answer_names_its_version(registry):
    first = registry.publish(seed=1)
    with following(registry.uri("latest")) as (client, service):
        assert poll(client, service) == "unchanged"
        answer = post(client, 0)
        assert answer.json()["model"]["version"] == answer.headers["x-model-version"] == first
        info = f'posevit_model_info{{alias="latest",backend="torch",version="{first}"}}'
        assert metric(client, info) == 1.0

        second = registry.publish(seed=2)  # latest moves
        first_batching = service.model.batching
        assert poll(client, service) == "swapped"
        batching = service.model.batching  # timed anew for the version swapped in, which the batcher now uses
        assert batching is not None and batching is not first_batching and batching.chosen_by == "measured"
        assert (
            service.batcher.batch_limit == batching.limit == client.get("/v1/model").json()["batching"]["batch_limit"]
        )
        assert poll(client, service) == "unchanged"  # the pointer has not moved since: S3 answered 304
        for route in ("/v1/predict", "/api/v1/pose_classifier"):
            answer = post(client, 0, route)
            assert answer.status_code == 200 and answer.headers["x-model-version"] == second, route
        assert set(answer.json()) == {"top_labels", "top_probs", "prediction_time"}  # the legacy body, unchanged
        batch = client.post("/v1/predict/batch", files=[("files", ("a.png", photo(1))), ("files", ("b.png", photo(2)))])
        assert batch.headers["x-model-version"] == second
        assert {r["result"]["model"]["version"] for r in batch.json()["results"]} == {second}
        card = client.get("/v1/model")
        assert card.headers["x-model-version"] == card.json()["version"] == second
        follow = card.json()["follow"]
        assert follow["alias"] == "latest" and follow["target"] == second and follow["interval_s"] == 3600
        assert follow["pointer"] == f"s3://{registry.address.bucket}/registry/posevit/latest.json"
        assert follow["last_swap"]["from"] == first and follow["last_swap"]["to"] == second
        assert follow["last_error"] is None
        assert client.get("/health/ready").json()["version"] == second
        assert metric(client, info) is None  # only the version serving now is in posevit_model_info
        assert metric(client, info.replace(first, second)) == 1.0
        assert metric(client, "posevit_model_swaps_total") == 1.0


def test_the_pointer_is_read_with_a_conditional_get(registry):
    version = registry.publish(seed=1)
    pointer = Pointer(registry.address, "latest")
    record, etag = read_pointer(registry.client, pointer)
    assert record is not None and record["version"] == version
    assert read_pointer(registry.client, pointer, etag) == (None, etag)  # 304: nothing downloaded
    moved = registry.publish(seed=2)
    record, new_etag = read_pointer(registry.client, pointer, etag)
    assert record is not None and record["version"] == moved and new_etag != etag


def test_requests_in_flight_finish_on_their_version_and_the_old_model_is_released(registry):
    first = registry.publish(seed=1)
    registry.move("production", first)
    with following(registry.uri("production"), max_batch_size=8) as (client, service):
        gate = Gate(service.predictor.forward)
        service.model.forward = gate
        old_model = weakref.ref(service.predictor)
        with ThreadPoolExecutor(4) as pool:
            in_pass = pool.submit(post, client, 1)
            assert gate.entered.wait(60)  # its batch is in the forward pass, held
            queued = pool.submit(post, client, 2)  # waits behind it, decoded for the old version
            wait_until(lambda: service.batcher.queue_depth == 1)

            second = registry.publish(seed=2)
            assert client.portal.call(service.follower.poll) == "unchanged"  # published, not promoted
            registry.move("production", second)
            polled = client.portal.start_task_soon(service.follower.poll)
            wait_until(lambda: service.served.version == second)  # swapped while the old batch is held
            after = pool.submit(post, client, 3)
            wait_until(lambda: service.batcher.queue_depth == 2)
            assert not polled.done()  # the old model is kept until its requests are answered
            assert old_model() is not None

            gate.release()
            versions = [future.result().json()["model"]["version"] for future in (in_pass, queued, after)]
        assert versions == [first, first, second]
        assert gate.batch_sizes == [1, 1]  # the old model's two batches: the new version's image never joined one
        assert polled.result(timeout=60) == "swapped"
        del gate
        gc.collect()
        assert old_model() is None  # released: at most two models, and only while swapping
        assert post(client, 4).json()["model"]["version"] == second


def test_a_version_that_fails_verification_stays_out_is_reported_and_retried(registry):
    first = registry.publish(seed=1)
    with following(registry.uri("latest")) as (client, service):
        broken = registry.publish(seed=2)
        registry.corrupt(broken)
        for attempt in (1, 2):  # the next poll tries again (and fails again)
            assert poll(client, service) == "failed"
            failures = metric(client, 'posevit_model_update_failures_total{stage="fetch"}')
            assert failures == attempt
        answer = post(client, 0)
        assert answer.status_code == 200 and answer.json()["model"]["version"] == first
        card = client.get("/v1/model").json()
        assert card["version"] == first
        error = card["follow"]["last_error"]
        assert error["stage"] == "fetch" and error["version"] == broken and "failed verification" in error["message"]
        assert card["follow"]["target"] == broken

        fixed = registry.publish(seed=3)
        assert poll(client, service) == "swapped"
        assert post(client, 0).json()["model"]["version"] == fixed


def test_a_version_that_fails_warm_up_stays_out_and_the_old_one_serves_on(registry):
    first = registry.publish(seed=1)
    with following(registry.uri("latest")) as (client, service):
        broken = registry.publish(seed=2, input_size=64)  # loads; its first forward pass fails
        assert poll(client, service) == "failed"
        error = client.get("/v1/model").json()["follow"]["last_error"]
        assert error["stage"] == "warm" and error["version"] == broken and "size of tensor" in error["message"]
        assert metric(client, 'posevit_model_update_failures_total{stage="warm"}') == 1.0
        assert metric(client, "posevit_model_swaps_total") == 0.0
        assert post(client, 0).json()["model"]["version"] == first


def test_an_alias_that_does_not_exist_is_a_failed_poll_not_a_failed_server(registry):
    registry.publish(seed=1)
    with following(registry.uri("latest")) as (client, service):
        service.follower = ModelFollower(service, Pointer(registry.address, "production"))
        assert poll(client, service) == "failed"
        error = client.get("/v1/model").json()["follow"]["last_error"]
        assert error["stage"] == "poll" and "aliases/production.json does not exist" in error["message"]
        assert post(client, 0).status_code == 200


def test_which_models_name_an_alias_to_follow():
    assert alias_of("s3://b/registry/posevit:production") == "production"
    assert alias_of("s3://b/registry/posevit") == alias_of("s3://b/registry/posevit:latest") == "latest"
    assert alias_of("registry") == "latest" and alias_of("registry:staging") == "staging"
    for pinned in ("s3://b/registry/posevit@0123456789abcdef", "registry:0123456789abcdef", "models", "auto"):
        assert alias_of(pinned) is None, pinned
    pointer = pointer_of("s3://bucket/team/registry/posevit:production")
    assert pointer is not None and pointer.uri == "s3://bucket/team/registry/posevit/aliases/production.json"
    with pytest.raises(ConfigError, match="'Prod' is not an alias name"):
        pointer_of("s3://bucket/registry/posevit:Prod")


def test_follow_needs_an_alias_and_a_positive_interval():
    settings = load_settings({"follow": "30", "model": "models"}, environ={})
    assert settings.follow == 30.0
    with pytest.raises(ConfigError, match=r"serve.follow = 30 follows a registry alias, and serve.model = 'models'"):
        followed_pointer(settings)
    with pytest.raises(ConfigError, match=r"serve.follow = '0' is invalid: .*greater than 0.*from --follow"):
        load_settings({"follow": "0"}, environ={})
    assert load_settings({}, environ={"POSEVIT_FOLLOW": "2.5"}).follow == 2.5
    assert load_settings({}, environ={}).follow is None  # off unless asked
