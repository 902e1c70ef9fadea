"""Where the app gets its model: the S3 registry (latest or pinned), a DVC revision, a local folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from posevit.core.config import write_params
from posevit.core.hashing import hash_directory
from posevit.infer.model_source import ModelSourceError, registry_skip, resolve
from posevit.publish.registry import ModelAddress, publish
from posevit.publish.s3 import make_client
from tests.helpers import ROOT
from tests.helpers.bundles import tiny_bundle


def run(cwd, *command: str) -> None:
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)


def test_registry_latest_and_pinned(aws_env, bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_params([f"push.bucket={bucket}"], output=tmp_path / "params.yaml", config_dir=ROOT / "conf")
    client, address = make_client(), ModelAddress(bucket, "registry", "posevit")
    versions = []
    for seed in (0, 1):
        run_dir = tmp_path / f"run{seed}"
        models = tiny_bundle(run_dir / "models", seed)
        (run_dir / "metrics").mkdir()
        (run_dir / "metrics" / "test.json").write_text(json.dumps({"accuracy": 0.5 + seed / 10}))
        version = hash_directory(models)
        files = {f"models/{p.name}": p for p in models.iterdir()} | {"metrics/test.json": run_dir / "metrics/test.json"}
        if seed == 1:  # the newer version came with its exports
            (run_dir / "exports").mkdir()
            for name in ("model.onnx", "model.int8.onnx", "input.json"):
                (run_dir / "exports" / name).write_bytes(name.encode())
                files[f"exports/{name}"] = run_dir / "exports" / name
        publish(client, address, version, files, progress=False)
        versions.append(version)

    latest = resolve("registry", tmp_path / "cache")
    pinned = resolve(f"registry:{versions[0]}", tmp_path / "cache")
    assert (latest.version, latest.metrics) == (versions[1], {"accuracy": 0.6})
    assert (pinned.version, pinned.metrics) == (versions[0], {"accuracy": 0.5})
    assert latest.exports_dir is not None and (latest.exports_dir / "model.onnx").read_bytes() == b"model.onnx"
    assert pinned.exports_dir is None
    assert latest.source == f"S3 registry s3://{bucket}/registry/posevit/{versions[1]}/"
    # The torch backend's fetch leaves the exports in S3.
    torch_only = resolve(f"registry:{versions[1]}", tmp_path / "torch-cache", registry_skip("torch"))
    assert torch_only.version == versions[1] and torch_only.exports_dir is None
    # The int8 backend's: config.json, the int8 file and the input spec; no weights, no fp32 file.
    int8_only = resolve(f"registry:{versions[1]}", tmp_path / "int8-cache", registry_skip("onnx-int8"))
    assert int8_only.version == versions[1] and int8_only.metrics == {"accuracy": 0.6}
    assert sorted(p.name for p in int8_only.bundle_dir.iterdir()) == ["config.json"]
    assert int8_only.exports_dir is not None
    assert sorted(p.name for p in int8_only.exports_dir.iterdir()) == ["input.json", "model.int8.onnx"]
    assert resolve("auto", tmp_path / "cache").version == versions[1]


def test_dvc_revision(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t.invalid")
    run(tmp_path, "git", "init", "-q")
    run(tmp_path, sys.executable, "-m", "dvc", "init", "-q")
    hashes = []
    for seed in (0, 1):
        tiny_bundle(tmp_path / "models", seed)
        run(tmp_path, sys.executable, "-m", "dvc", "add", "-q", "models")
        run(tmp_path, "git", "add", "-A")
        run(tmp_path, *git, "commit", "-qm", f"model {seed}")
        hashes.append(hash_directory(tmp_path / "models"))

    old = resolve("dvc:HEAD~1", tmp_path / "cache")
    assert old.version == hashes[0] and old.source == "DVC revision HEAD~1" and old.metrics is None
    assert resolve("dvc:HEAD", tmp_path / "cache").version == hashes[1]
    with pytest.raises(ModelSourceError, match="cannot get models/ at revision 'no-such-rev'"):
        resolve("dvc:no-such-rev", tmp_path / "cache")


def test_local_folder_and_missing_everything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelSourceError, match="holds no model bundle"):
        resolve(str(tmp_path / "nothing"), tmp_path / "cache")
    tiny_bundle(tmp_path / "models")
    served = resolve("models", tmp_path / "cache")
    assert served.version == hash_directory(tmp_path / "models") and served.metrics is None
