"""Two real `posevit serve --follow 1` processes and the real SeaweedFS: closed-loop clients keep asking while the
alias is promoted and rolled back three times. Every request gets 200, each client sees the version change only
at the moves (and in their order), and both servers read each move within one poll interval and swap it in right
after. The swap logic itself (in-flight requests, failing versions) is tested in-process in tests/test_follow.py."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import pytest

from posevit.publish.registry import ModelAddress
from posevit.publish.s3 import make_client
from tests.helpers.api import photo
from tests.helpers.registry_versions import TestRegistry
from tests.helpers.server import RunningApp

pytestmark = pytest.mark.timeout(120)
POLL_S = 1.0
CLIENTS_PER_SERVER = 2


@dataclass
class Answer:
    sent: float  # time.time() on both sides: the servers' card times are wall-clock too
    received: float
    status: int
    version: str | None


@dataclass
class ClosedLoopClient:
    """Sends the next request as soon as the last is answered, until told to stop."""

    url: str
    seed: int
    answers: list[Answer] = field(default_factory=list)

    def run(self, stop: threading.Event) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not stop.is_set():
                sent = time.time()
                response = http.post("v1/predict", files={"file": ("p.png", photo(self.seed))})
                self.answers.append(
                    Answer(sent, time.time(), response.status_code, response.headers.get("x-model-version"))
                )

    def versions_seen(self) -> list[str | None]:
        """The versions it was answered by, each run of equal ones once."""
        seen: list[str | None] = []
        for answer in self.answers:
            if not seen or seen[-1] != answer.version:
                seen.append(answer.version)
        return seen


def card(server: RunningApp) -> dict:
    return httpx.get(server.url + "v1/model", timeout=10).json()


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_two_servers_follow_promotions_and_rollbacks_with_no_failed_request(aws_env, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("POSEVIT_CACHE", str(tmp_path / "publisher-cache"))
    registry = TestRegistry(make_client(), ModelAddress(bucket, "registry", "posevit"), tmp_path)
    first, second = registry.publish(seed=1), registry.publish(seed=2)
    registry.move("production", first)
    homes = [tmp_path / f"server{i}" for i in (1, 2)]  # each its own cache, as each pod has
    for home in homes:
        home.mkdir()
    args = ("--model", registry.uri("production"), "--follow", str(POLL_S), "--max-wait-ms", "0")
    with ThreadPoolExecutor(2) as starting:
        servers = list(starting.map(lambda home: RunningApp(home, *args), homes))
    stop = threading.Event()
    clients = [ClosedLoopClient(server.url, seed) for server in servers for seed in range(CLIENTS_PER_SERVER)]
    pool = ThreadPoolExecutor(len(clients))
    try:
        assert [card(server)["version"] for server in servers] == [first, first]
        running = [pool.submit(client.run, stop) for client in clients]
        time.sleep(0.3)  # some answers from the first version
        moves: list[tuple[str, float]] = []
        for target, why in ((second, "promote"), (first, "roll back")) * 3:  # promoted and rolled back three times
            moved_at = time.time()
            registry.move("production", target, why)
            moves.append((target, moved_at))
            deadline = time.monotonic() + 10 * POLL_S
            while not all(card(server)["version"] == target for server in servers):
                assert time.monotonic() < deadline, [card(server)["follow"] for server in servers]
                time.sleep(0.05)
            for server in servers:
                swap = card(server)["follow"]["last_swap"]
                assert swap["to"] == target
                assert epoch(swap["seen_at"]) - moved_at < POLL_S + 0.5, (server.url, swap)  # within one poll
                assert epoch(swap["at"]) - moved_at < POLL_S + 3.0, (server.url, swap)  # fetched, loaded, warm
            time.sleep(0.2)  # every client gets answers from it
        stop.set()
        for future in running:
            future.result(timeout=60)
    finally:
        stop.set()
        pool.shutdown(wait=True)
        for server in servers:
            server.stop()

    order = [first, *(target for target, _ in moves)]
    for client in clients:
        assert {answer.status for answer in client.answers} == {200}, client.url
        assert client.versions_seen() == order, client.url  # changes only at the moves, in their order
        changes = [
            a for previous, a in zip(client.answers, client.answers[1:], strict=False) if a.version != previous.version
        ]
        for change, (target, moved_at) in zip(changes, moves, strict=True):
            assert change.version == target and change.received >= moved_at
    assert sum(len(client.answers) for client in clients) > 40
