"""`make s3` / `make s3-stop` and the DVC S3 remote, for real: a project copy starts its own SeaweedFS,
`dvc repro` publishes through the push stage, `dvc push` and a fresh clone's `dvc pull` restore every output."""

from __future__ import annotations

import filecmp
import json
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from posevit.core.hashing import hash_directory
from posevit.devtools.local_s3 import DEFAULT_S3_PORT, LocalS3, _port_free, free_port
from posevit.publish.registry import ModelAddress, fetch_model, read_latest
from posevit.publish.s3 import make_client
from tests.helpers.dvc_project import DvcProject, copy_project, reproduced_smoke_project

pytestmark = pytest.mark.slow

VENV = Path(sys.executable).parent.parent


def make(project: DvcProject, *args: str) -> subprocess.CompletedProcess[str]:
    # -o: the test's own venv is already installed; never rebuild it from inside a test.
    return project.run("make", "--no-print-directory", "-o", f"{VENV}/.installed", f"VENV={VENV}", *args)


def source_env(project: DvcProject) -> dict[str, str]:
    """What `source .s3/env` does."""
    exports = (project.root / ".s3" / "env").read_text().splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in exports if line.startswith("export "))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A smoke-config copy with its own `make s3` server, reproduced end to end including push."""
    project = reproduced_smoke_project(
        tmp_path_factory, tmp_path_factory.mktemp("s3") / "posevit", "push.conditions=[{metric:n_test,threshold:1}]"
    )  # a bar the smoke model passes: its repro below runs push alone
    port = free_port()
    project.started = make(project, "s3", f"S3_PORT={port}")
    project.server = LocalS3(project.root / ".s3")
    try:
        project.env.update(source_env(project), AWS_EC2_METADATA_DISABLED="true")
        project.dvc("repro")
        project.commit("reproduced")
        yield project
    finally:
        make(project, "s3-stop")


def test_make_s3_twice_is_harmless_and_configures_dvc_locally(project):
    server = project.server
    pid = int((project.root / ".s3" / "weed.pid").read_text())
    assert "SeaweedFS started" in project.started.stdout
    again = make(project, "s3")
    assert "SeaweedFS already running" in again.stdout and f"PID {pid}" in again.stdout
    assert Path(f"/proc/{pid}").exists() and server.running_pid() == pid

    buckets = {b["Name"] for b in server.client().list_buckets()["Buckets"]}
    assert {"posevit-dvc", "posevit-models"} <= buckets
    local = (project.root / ".dvc" / "config.local").read_text()
    key, secret = server.credentials()
    assert f"endpointurl = {server.endpoint}" in local and secret in local
    assert (project.root / ".dvc" / "config.local").stat().st_mode & 0o077 == 0
    tracked = project.run("git", "ls-files").stdout
    assert "config.local" not in tracked and ".s3/" not in tracked
    for output in (project.started, again):
        assert secret not in output.stdout + output.stderr
    assert secret not in (project.root / ".s3" / "env").read_text()


def test_repro_publishes_the_model_through_the_push_stage(project, monkeypatch):
    receipt = json.loads((project.root / "metrics" / "push.json").read_text())
    version = hash_directory(project.root / "models")
    assert receipt["pushed"] is True and receipt["version"] == version
    assert receipt["uri"] == f"s3://posevit-models/registry/posevit/{version}/"

    for name, value in source_env(project).items():
        monkeypatch.setenv(name, value)
    client = make_client()
    address = ModelAddress("posevit-models", "registry", "posevit")
    assert read_latest(client, address)["version"] == version
    fetched = fetch_model(client, address, cache_dir=project.root.parent / "cache", progress=False)
    assert filecmp.cmp(
        fetched / "models" / "model.safetensors", project.root / "models" / "model.safetensors", shallow=False
    )
    assert "up to date" in project.dvc("repro").stdout  # nothing changed: push does not run again


def test_dvc_push_then_pull_in_a_fresh_clone_restores_every_output(project, tmp_path):
    project.dvc("push")
    clone = DvcProject(tmp_path / "clone")
    clone.env = project.env
    project.run("git", "clone", "-q", str(project.root), str(clone.root))
    assert not (clone.root / "models").exists() and not (clone.root / "data" / "processed").exists()
    # The clone's machine knows the remote's endpoint and keys the way `make s3` records them.
    shutil.copy(project.root / ".dvc" / "config.local", clone.root / ".dvc" / "config.local")
    clone.dvc("pull")

    lock = yaml.safe_load((project.root / "dvc.lock").read_text())
    outputs = {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    assert {"data/processed", "models", "metrics/test.json", "metrics/push.json"} <= outputs
    for output in sorted(outputs):
        original, restored = project.root / output, clone.root / output
        if original.is_dir():
            files = sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file())
            assert files == sorted(p.relative_to(restored) for p in restored.rglob("*") if p.is_file()), output
            assert all(filecmp.cmp(original / f, restored / f, shallow=False) for f in files), output
        else:
            assert filecmp.cmp(original, restored, shallow=False), output
    status = clone.dvc("status")
    assert "up to date" in status.stdout, status.stdout


def test_make_s3_stop_stops_the_server_by_its_pid(tmp_path):
    project = DvcProject(tmp_path)
    shutil.copy(Path(__file__).parents[1] / "Makefile", tmp_path / "Makefile")
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("")
    port = free_port()
    server = LocalS3(tmp_path / ".s3", port)
    pid = server.start()
    assert make(project, "s3-stop").stdout.splitlines()[-1] == "stopped SeaweedFS"
    assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
    assert _port_free(port) and not (tmp_path / ".s3" / "weed.pid").exists()
    assert make(project, "s3-stop").stdout.splitlines()[-1] == "SeaweedFS was not running"


def test_make_s3_moves_to_a_free_port_when_the_default_one_is_taken(tmp_path):
    """Two clones on one machine: the second finds 8333 taken, picks a free port, records it and says so."""
    blocker = socket.socket()
    try:
        blocker.bind(("127.0.0.1", DEFAULT_S3_PORT))
        blocker.listen()
    except OSError:
        pass  # already taken by another program: the situation under test either way
    project = copy_project(tmp_path / "second-clone", "experiment=smoke")
    try:
        started = make(project, "s3")
        output = started.stdout + started.stderr
        moved = json.loads((project.root / ".s3" / "ports.json").read_text())["s3"]
        assert moved != DEFAULT_S3_PORT and f"port {DEFAULT_S3_PORT} on 127.0.0.1 is taken" in output, output
        assert f"S3 moves to port {moved}" in output and f"S3 at http://127.0.0.1:{moved}" in output
        assert f"127.0.0.1:{moved}" in (project.root / ".s3" / "aws" / "config").read_text()
        again = make(project, "s3")
        assert "SeaweedFS already running" in again.stdout and f"127.0.0.1:{moved}" in again.stdout
    finally:
        make(project, "s3-stop")
        blocker.close()


def test_the_server_has_volume_slots_for_every_bucket_a_test_session_makes(s3_server):
    """Each bucket takes a volume of its own; left to itself SeaweedFS caps them at free disk / volume size, which
    ran out after about 70 buckets on a 72 GB disk ("no free volumes left", an InternalError on the next write)."""
    master = json.loads((s3_server.root / "ports.json").read_text())["master"]
    with urllib.request.urlopen(f"http://127.0.0.1:{master}/dir/status", timeout=10) as answer:
        topology = json.loads(answer.read())["Topology"]
    assert topology["Max"] >= 1000, topology
