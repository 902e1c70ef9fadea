"""Shared fixtures: the project root and a real S3 server. Builders live in tests/helpers/."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.s3 import s3_environment

_HF_VARIABLES = ("HF_HOME", "HF_DATASETS_CACHE", "HF_HUB_OFFLINE")
_saved_environment: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Before any test module imports `datasets` (it reads these once): keep the tests' dataset caches
    out of the user's ~/.cache and the hubs unreachable, as on CI; put everything back afterwards."""
    cache = Path(tempfile.mkdtemp(prefix="posevit-hf-cache-"))
    _saved_environment.update({name: os.environ.get(name) for name in _HF_VARIABLES})
    _saved_environment["_cache"] = str(cache)
    os.environ.update({"HF_HOME": str(cache), "HF_DATASETS_CACHE": str(cache / "datasets"), "HF_HUB_OFFLINE": "1"})


@pytest.fixture(autouse=True)
def _sigchld_as_found():
    """Each test leaves SIGCHLD's handler as it found it. PyTorch's DataLoader installs one in the process the first
    time it starts workers (to report a worker that died) and never removes it, so a test that trained in-process
    left it to every later test of its worker. There, once the export stage had also run in-process, a child's exit
    during `subprocess.run` crashed the worker (SIGSEGV inside the handler's interpreter frame, found with a core
    dump): a pipeline stage is a process of its own, a test worker is not."""
    handler = signal.getsignal(signal.SIGCHLD)
    yield
    signal.signal(signal.SIGCHLD, handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = _saved_environment.pop("_cache", None)
    for name, value in _saved_environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if cache:
        shutil.rmtree(cache, ignore_errors=True)


@pytest.fixture
def in_project_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(ROOT)
    return ROOT


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real SeaweedFS S3 server for the whole test session: free ports, temp dir, its own credentials."""
    from posevit.devtools.local_s3 import LocalS3, free_port

    server = LocalS3(tmp_path_factory.mktemp("seaweedfs"), free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws_env(s3_server, monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_environment(s3_server).items():
        monkeypatch.setenv(name, value)
    return s3_server


_bucket_count = iter(range(10**6))


@pytest.fixture
def bucket(s3_server) -> str:
    """A fresh, empty bucket on the test server."""
    name = f"test-{os.getpid()}-{next(_bucket_count)}"
    s3_server.create_buckets([name])
    return name


@pytest.fixture(scope="session")
def serving_venv() -> Path:
    """The serving install alone (`make serve-venv`: requirements/serve.txt, no torch), built once and kept."""
    from tests.helpers.slim import serving_venv as build

    return build()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The real pipeline's end-to-end runs (marked slow) first: under `make test`'s workers (pytest-xdist, whole
    files each) they start at once and the short files fill in around them, instead of one running alone last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
