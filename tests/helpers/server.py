"""A real `posevit serve` process on a free port, for tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from posevit.devtools.local_s3 import free_port
from tests.helpers import ROOT


class RunningApp:
    """`python app.py --port <free> *args` in `tmp` (or `command`, e.g. another venv's `posevit serve`), started and
    waited for until it is ready."""

    def __init__(
        self,
        tmp: Path,
        *args: str,
        env: dict[str, str] | None = None,
        ready_path: str = "/health/ready",
        command: list[str] | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tmp / f"app-{self.port}.log"
        environment = {
            **os.environ,
            "POSEVIT_CACHE": str(tmp / "cache"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **(env or {}),
        }
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*(command or [sys.executable, str(ROOT / "app.py")]), "--port", str(self.port), *args],
                cwd=tmp,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(self.url + ready_path.lstrip("/"), timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"app did not start:\n{self.log.read_text()}")
            time.sleep(0.5)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")
