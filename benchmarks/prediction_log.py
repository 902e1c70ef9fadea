"""The prediction log's cost: p50 at concurrency 8 with serve.prediction_log on against the same server without it,
measured in turns in one run (off on, on off, off on, ...) so both share whatever else the machine does.

    python -m benchmarks.prediction_log [--requests 400] [--turns 5] [--concurrency 8]

Two `posevit serve` processes on the same bundle (the demo model's architecture with random weights: the
smallest forward pass, so the log's share of a request is the largest it gets) run side by side, one
logging every prediction to a temporary folder. Closed-loop clients post a 640x480 JPEG; each turn sends
`--requests` requests to one server. It prints JSON with p50/p95 of each side over all its turns, the p50
ratio (target: at most a few percent over 1), every failed (non-200) request, and the rows the log holds
after the logging server shut down against the requests it answered (none may be lost but those
/metrics counted as dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from benchmarks.clients import post_in_closed_loop
from benchmarks.common import percentiles, photo_jpeg, write_random_bundle, write_result
from posevit.core.config import ModelConfig
from posevit.devtools.local_s3 import free_port

ROUTE = "/v1/predict"
DEMO_MODEL = ModelConfig(name="vit_convstem_tiny")


@contextmanager
def serving(commands: dict[str, list[str]], logs: Path) -> Iterator[None]:
    """Start every server at once (most of a start is imports), wait until each is ready, stop them after."""
    processes = {}
    for number, (url, command) in enumerate(commands.items()):
        with (logs / f"server-{number}.log").open("w") as handle:
            processes[url] = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 300
        for number, (url, process) in enumerate(processes.items()):
            while not ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (logs / f"server-{number}.log").read_text()[-3000:]
                    raise SystemExit(f"server did not start: {' '.join(commands[url])}\n{log}")
                time.sleep(0.5)
        yield
    finally:
        for process in processes.values():
            process.terminate()  # uvicorn shuts down gracefully: the logging server closes its last file
        for process in processes.values():
            process.wait(timeout=60)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def closed_loop(url: str, photo: bytes, concurrency: int, requests: int) -> tuple[list[float], list[int]]:
    """`concurrency` clients sharing `requests` requests, each sending its next as soon as the last is answered."""
    left = [requests]

    def another() -> bool:
        left[0] -= 1
        return left[0] >= 0

    return post_in_closed_loop(url, photo, concurrency, another)


def dropped_rows(base_url: str) -> int:
    for line in httpx.get(f"{base_url}/metrics", timeout=10).text.splitlines():
        if line.startswith("posevit_prediction_log_dropped_total "):
            return int(float(line.split()[-1]))
    raise SystemExit("the logging server's /metrics has no posevit_prediction_log_dropped_total")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per turn and server")
    parser.add_argument("--turns", type=int, default=5, help="turns per server, alternating")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=32, help="requests to each server before the first turn")
    args = parser.parse_args()
    photo = photo_jpeg()
    seconds: dict[str, list[float]] = {"without_log": [], "with_log": []}
    turn_p50s: dict[str, list[float]] = {"without_log": [], "with_log": []}
    failed = 0
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        bundle = write_random_bundle(root / "models", DEMO_MODEL)
        ports = {"without_log": free_port(), "with_log": free_port()}
        log_folder = root / "prediction-log"
        command = [sys.executable, "-m", "posevit.serve.app", "--model", str(bundle)]
        plain = [*command, "--port", str(ports["without_log"])]
        logged = [*command, "--port", str(ports["with_log"]), "--prediction-log", str(log_folder)]
        urls = {side: f"http://127.0.0.1:{port}" for side, port in ports.items()}
        with serving({urls["without_log"]: plain, urls["with_log"]: logged}, root):
            for side in seconds:
                if args.warmup:
                    closed_loop(urls[side] + ROUTE, photo, args.concurrency, args.warmup)
            for turn in range(args.turns):
                for side in list(seconds)[:: 1 if turn % 2 == 0 else -1]:  # off-on, on-off, ...: no side always second
                    latencies, statuses = closed_loop(urls[side] + ROUTE, photo, args.concurrency, args.requests)
                    failed += sum(1 for status in statuses if status != 200)
                    seconds[side] += latencies
                    turn_p50s[side].append(percentiles(latencies)["p50_ms"])
            dropped = dropped_rows(urls["with_log"])
        # The logging server has shut down: its last file is closed.
        logged_rows = sum(pq.read_metadata(path).num_rows for path in log_folder.rglob("*.parquet"))
    without, with_log = percentiles(seconds["without_log"]), percentiles(seconds["with_log"])
    report = {
        "benchmark": "prediction_log",
        "model": f"{DEMO_MODEL.name} (random weights)",
        "route": ROUTE,
        "concurrency": args.concurrency,
        "turns": args.turns,
        "requests_per_turn": args.requests,
        "without_log": {"requests": len(seconds["without_log"]), **without, "turn_p50s_ms": turn_p50s["without_log"]},
        "with_log": {"requests": len(seconds["with_log"]), **with_log, "turn_p50s_ms": turn_p50s["with_log"]},
        "p50_ratio": round(with_log["p50_ms"] / without["p50_ms"], 3),
        # The same ratio turn by turn: how much of the overall one is the machine's drift between turns.
        "median_turn_p50_ratio": round(
            statistics.median(w / o for w, o in zip(turn_p50s["with_log"], turn_p50s["without_log"], strict=True)), 3
        ),
        "failed_requests": failed,
        "requests_to_the_logged_server": len(seconds["with_log"]) + args.warmup,
        "logged_rows": logged_rows,
        "dropped_rows": dropped,
        "target_p50_ratio": 1.05,
    }
    print(json.dumps(report, indent=2))
    write_result("prediction_log", report)


if __name__ == "__main__":
    main()
