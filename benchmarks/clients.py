"""Closed-loop HTTP clients for the server benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx


def post_in_closed_loop(
    url: str, photo: bytes, concurrency: int, another: Callable[[], bool]
) -> tuple[list[float], list[int]]:
    """`concurrency` clients, each posting `photo` again as soon as its last answer came, while `another()` says
    so (called under a lock). Returns each request's seconds and status (0: no HTTP answer)."""
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while True:
                with lock:
                    if not another():
                        return
                started = time.perf_counter()
                try:
                    status = http.post(url, files={"file": ("photo.jpg", photo, "image/jpeg")}).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    latencies.append(time.perf_counter() - started)
                    statuses.append(status)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses
