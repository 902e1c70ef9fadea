"""Where the app gets its model: the S3 registry (by URI, or the project's push.*), a DVC revision, a local folder;
each with only the files its backend runs, cached under one root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from posevit.core.config import write_params
from posevit.core.errors import ConfigError
from posevit.core.hashing import hash_directory
from posevit.core.paths import cache_root
from posevit.infer.model_source import ModelSourceError, parse_s3_uri, resolve
from posevit.publish.aliases import move_alias, read_pointer
from posevit.publish.registry import ModelAddress, publish
from posevit.publish.s3 import S3Error, make_client
from tests.helpers import ROOT
from tests.helpers.bundles import tiny_bundle
from tests.helpers.images import png_bytes


def run(cwd, *command: str) -> None:
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Callable[[], Path]:
    """A fresh POSEVIT_CACHE for the test; calling it switches to another one, as a new machine would have."""
    count = iter(range(100))

    def fresh() -> Path:
        folder = tmp_path / f"cache{next(count)}"
        monkeypatch.setenv("POSEVIT_CACHE", str(folder))
        return folder

    fresh()
    return fresh


def publish_two_versions(workspace: Path, bucket: str) -> list[str]:
    """Two versions under s3://bucket/registry/posevit/: the first without exports, the newer with them."""
    client, address = make_client(), ModelAddress(bucket, "registry", "posevit")
    versions = []
    for seed in (0, 1):
        run_dir = workspace / f"run{seed}"
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
    return versions


def test_the_project_registry_latest_and_pinned_each_with_its_backends_files(aws_env, bucket, tmp_path, cache):
    project = tmp_path / "project"
    project.mkdir()
    write_params([f"push.bucket={bucket}"], output=project / "params.yaml", config_dir=ROOT / "conf")
    versions = publish_two_versions(tmp_path, bucket)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        latest = resolve("registry", "onnx")
        pinned = resolve(f"registry:{versions[0]}", "torch")
        assert resolve("auto", "torch").version == versions[1]
        cache()
        torch_only = resolve(f"registry:{versions[1]}", "torch")
        cache()
        int8_only = resolve(f"registry:{versions[1]}", "onnx-int8")
        with pytest.raises(
            ModelSourceError, match=f"backend onnx-int8 runs exports/model.int8.onnx, and s3://{bucket}"
        ):
            resolve(f"registry:{versions[0]}", "onnx-int8")  # published before the export stage existed
    assert (latest.version, latest.metrics) == (versions[1], {"accuracy": 0.6})
    assert (pinned.version, pinned.metrics) == (versions[0], {"accuracy": 0.5})
    assert latest.exports_dir is not None and (latest.exports_dir / "model.onnx").read_bytes() == b"model.onnx"
    assert pinned.exports_dir is None
    assert latest.source == f"S3 registry s3://{bucket}/registry/posevit/{versions[1]}/"
    # The torch backend's fetch leaves the exports in S3.
    assert torch_only.version == versions[1] and torch_only.exports_dir is None
    # The int8 backend's: config.json and the int8 file it runs; no weights, no fp32 file, no input spec.
    assert int8_only.version == versions[1] and int8_only.metrics == {"accuracy": 0.6}
    assert sorted(p.name for p in int8_only.bundle_dir.iterdir()) == ["config.json"]
    assert int8_only.exports_dir is not None
    assert sorted(p.name for p in int8_only.exports_dir.iterdir()) == ["model.int8.onnx"]
    assert int8_only.bundle_dir.is_relative_to(cache_root() / "registry")


def test_an_s3_uri_serves_from_any_directory_with_the_aws_chain_alone(aws_env, bucket, tmp_path, cache, monkeypatch):
    versions = publish_two_versions(tmp_path, bucket)
    monkeypatch.chdir(tmp_path)  # no params.yaml, no models/: not a project
    base = f"s3://{bucket}/registry/posevit"
    assert resolve(f"{base}:latest", "torch").version == versions[1]
    assert resolve(base, "onnx-int8").version == versions[1]
    pinned = resolve(f"{base}@{versions[0]}", "torch")
    assert pinned.version == versions[0] and pinned.source == f"S3 registry {base}/{versions[0]}/"
    with pytest.raises(S3Error, match="is not a complete published version"):
        resolve(f"{base}@{'0' * 16}", "torch")
    with pytest.raises(ModelSourceError, match="no params.yaml in this directory.*s3://BUCKET/PREFIX/NAME:latest"):
        resolve("registry", "torch")
    with pytest.raises(ModelSourceError, match="no posevit project") as error:
        resolve("auto", "torch")
    assert "s3://BUCKET/PREFIX/NAME" in str(error.value) and "make params" not in str(error.value)


def test_an_alias_serves_the_version_it_points_at_by_uri_and_in_the_project(aws_env, bucket, tmp_path, cache):
    versions = publish_two_versions(tmp_path, bucket)
    client, address = make_client(), ModelAddress(bucket, "registry", "posevit")
    move_alias(client, address, "production", versions[0], by="test")
    base = f"s3://{bucket}/registry/posevit"
    assert resolve(f"{base}:production", "torch").version == versions[0]
    project = tmp_path / "project"
    project.mkdir()
    write_params([f"push.bucket={bucket}"], output=project / "params.yaml", config_dir=ROOT / "conf")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        assert resolve("registry:production", "torch").version == versions[0]
        _, etag = read_pointer(client, address, "production")
        move_alias(client, address, "production", versions[1], by="test", expected_etag=etag)
        assert resolve("registry:production", "onnx").version == versions[1]  # the alias moved: so does the model
        with pytest.raises(S3Error, match=r"no alias and no version named 'staging' .*its aliases: production"):
            resolve("registry:staging", "torch")


def test_posevit_predict_outside_the_project_takes_a_model_uri(aws_env, bucket, tmp_path):
    """Found by a new user: from any directory but the project root, predict said `params.yaml not found`."""
    versions = publish_two_versions(tmp_path, bucket)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.png").write_bytes(png_bytes((200, 30, 90), (120, 96)))

    def predict(model: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "posevit.cli", "predict", "photo.png", "--model", model, "--quiet"]
        environment = {**os.environ, "POSEVIT_CACHE": str(tmp_path / "cache")}  # aws_env: the test S3
        return subprocess.run(command, cwd=elsewhere, capture_output=True, text=True, timeout=240, env=environment)

    result = predict(f"s3://{bucket}/registry/posevit@{versions[0]}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("photo.png,")
    assert f"version {versions[0]}" in result.stderr
    result = predict("auto")
    assert result.returncode == 2 and "s3://BUCKET/PREFIX/NAME" in result.stderr, result.stderr
    assert "params.yaml not found" not in result.stderr


@pytest.mark.parametrize(
    ("uri", "address", "version"),
    [
        ("s3://b-1/registry/team/posevit@6fc2ec829bc170f6", ("b-1", "registry/team", "posevit"), "6fc2ec829bc170f6"),
        ("s3://posevit-models/models/posevit-vit:latest", ("posevit-models", "models", "posevit-vit"), "latest"),
        ("s3://bucket/posevit", ("bucket", "", "posevit"), "latest"),
        ("s3://bucket/a/b/posevit/", ("bucket", "a/b", "posevit"), "latest"),
        ("s3://bucket/a/posevit:production", ("bucket", "a", "posevit"), "production"),
    ],
)
def test_model_uris_name_bucket_prefix_name_and_version(uri, address, version):
    parsed, parsed_version = parse_s3_uri(uri)
    assert (parsed.bucket, parsed.prefix, parsed.model_name) == address and parsed_version == version


@pytest.mark.parametrize(
    "uri", ["s3://", "s3://bucket", "s3://bucket/name@", "s3://bucket/name:V3", "s3://b/n:latest@v", "s3://b/n@v/x"]
)
def test_a_malformed_model_uri_says_how_to_write_one(uri):
    with pytest.raises(ModelSourceError, match="is not a model URI: write s3://BUCKET/PREFIX/NAME:latest or"):
        parse_s3_uri(uri)


def test_the_registry_reads_push_alone_from_params_yaml(aws_env, tmp_path, monkeypatch):
    """Serving validates no stage's config: a params.yaml whose other groups are broken still names the registry;
    a broken push.* says which key."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"train": {"epochs": "many"}, "push": {"bucket": "b", "conditions": []}})
    )
    with pytest.raises(ConfigError, match=r"params.yaml: push.bucket: String should have at least 3 characters"):
        resolve("registry", "torch")
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"train": {"epochs": "many"}, "push": {"bucket": "no-such-bucket", "always": True}})
    )
    with pytest.raises(S3Error, match="bucket 'no-such-bucket' does not exist"):
        resolve("registry", "torch")  # it got as far as S3 (the AWS chain's endpoint: the test server)


def test_one_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("POSEVIT_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("POSEVIT_CACHE")
    assert cache_root() == tmp_path / "xdg" / "posevit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "posevit"


def dvc_project(root: Path, with_exports: bool) -> list[str]:
    """A git + DVC project with two commits of models/ (and exports/); returns the bundles' hashes."""
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t.invalid")
    run(root, "git", "init", "-q")
    run(root, sys.executable, "-m", "dvc", "init", "-q")
    hashes = []
    for seed in (0, 1):
        tiny_bundle(root / "models", seed)
        run(root, sys.executable, "-m", "dvc", "add", "-q", "models")
        if with_exports:
            (root / "exports").mkdir(exist_ok=True)
            for name in ("model.onnx", "model.int8.onnx"):
                (root / "exports" / name).write_bytes(f"{name} {seed}".encode())
            run(root, sys.executable, "-m", "dvc", "add", "-q", "exports")
        run(root, "git", "add", "-A")
        run(root, *git, "commit", "-qm", f"model {seed}")
        hashes.append(hash_directory(root / "models"))
    return hashes


def test_dvc_revision(tmp_path, monkeypatch, cache):
    monkeypatch.chdir(tmp_path)
    hashes = dvc_project(tmp_path, with_exports=False)
    old = resolve("dvc:HEAD~1", "torch")
    assert old.version == hashes[0] and old.source == "DVC revision HEAD~1" and old.metrics is None
    assert resolve("dvc:HEAD", "torch").version == hashes[1]
    assert old.bundle_dir.is_relative_to(cache_root() / "dvc")
    with pytest.raises(ModelSourceError, match="cannot get models/ at revision 'no-such-rev'"):
        resolve("dvc:no-such-rev", "torch")


def test_a_dvc_revision_whose_exports_are_in_no_cache_still_serves_with_torch(tmp_path, monkeypatch, cache):
    """Found by a new user: `--model dvc:HEAD~3` failed with `failed to load directory ('exports',)` for the torch
    backend, which runs no export; an ONNX backend gets only its file, or an error that names it."""
    monkeypatch.chdir(tmp_path)
    hashes = dvc_project(tmp_path, with_exports=True)
    int8 = resolve("dvc:HEAD~1", "onnx-int8")
    assert int8.version == hashes[0] and int8.exports_dir is not None  # the bundle came along: it is the version
    assert sorted(p.name for p in int8.exports_dir.iterdir()) == ["model.int8.onnx"]
    assert (int8.exports_dir / "model.int8.onnx").read_bytes() == b"model.int8.onnx 0"

    # As after a fresh `make demo` that made other exports: the committed ones are in no cache and no remote.
    shutil.rmtree(tmp_path / ".dvc" / "cache")
    shutil.rmtree(tmp_path / "exports")
    run(tmp_path, sys.executable, "-m", "dvc", "add", "-q", "models")  # the bundle is cached again
    assert resolve("dvc:HEAD", "torch").version == hashes[1]
    with pytest.raises(ModelSourceError, match=r"cannot get exports/model.int8.onnx at revision 'HEAD'.*use backend"):
        resolve("dvc:HEAD", "onnx-int8")


def test_local_folder_and_missing_everything(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelSourceError, match="holds no model bundle"):
        resolve(str(tmp_path / "nothing"), "torch")
    tiny_bundle(tmp_path / "models")
    served = resolve("models", "torch")
    assert served.version == hash_directory(tmp_path / "models") and served.metrics is None
    assert resolve("auto", "torch").version == served.version  # outside a project, auto is models/
