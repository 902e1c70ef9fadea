"""The S3 model registry against a real SeaweedFS: versions, verification, never-overwrite, a crash mid-upload."""

from __future__ import annotations

import json

import pytest

from posevit.core.hashing import hash_directory
from posevit.models.bundle import load_bundle
from posevit.publish.registry import ModelAddress, NotPublished, fetch_model, publish, read_latest
from posevit.publish.s3 import S3Error, make_client
from tests.helpers.bundles import tiny_bundle


def version_files(workspace, seed: int, accuracy: float = 0.9):
    """A bundle plus test metrics and report, as the push stage uploads them: (version, files)."""
    models = tiny_bundle(workspace / f"run{seed}" / "models", seed)
    metrics = workspace / f"run{seed}" / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    (metrics / "test.json").write_text(json.dumps({"accuracy": accuracy}))
    (metrics / "report.xlsx").write_bytes(b"report " * 100)
    files = {f"models/{p.name}": p for p in models.iterdir()}
    files |= {"metrics/test.json": metrics / "test.json", "metrics/report.xlsx": metrics / "report.xlsx"}
    return hash_directory(models), files


def publish_with_exports(client, address, workspace) -> tuple[str, dict]:
    """A version with its two ONNX exports (stand-in bytes: the registry only moves and checks them): (version,
    the files published)."""
    version, files = version_files(workspace, seed=0)
    exports = workspace / "exports"
    exports.mkdir()
    for name in ("model.onnx", "model.int8.onnx"):
        (exports / name).write_bytes(name.encode() * 100)
        files[f"exports/{name}"] = exports / name
    publish(client, address, version, files, progress=False)
    return version, files


TORCH_FILES = ["models/config.json", "models/model.safetensors"]  # what infer.backends declares
INT8_FILES = ["models/config.json", "exports/model.int8.onnx"]


def cached_files(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def keys(client, bucket: str) -> set[str]:
    return {item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


@pytest.fixture
def address(bucket) -> ModelAddress:
    return ModelAddress(bucket, "registry/team", "posevit")


def test_publish_uploads_a_versioned_verified_tree_then_moves_latest(aws_env, address, tmp_path):
    client = make_client()  # the standard chain: profile + endpoint from AWS_CONFIG_FILE
    version, files = version_files(tmp_path, seed=0)
    result = publish(client, address, version, files, record={"metrics": {"accuracy": 0.9}}, progress=False)

    base = f"registry/team/posevit/{version}"
    assert keys(client, address.bucket) == {
        f"{base}/models/model.safetensors",
        f"{base}/models/config.json",
        f"{base}/metrics/test.json",
        f"{base}/metrics/report.xlsx",
        f"{base}/manifest.json",
        "registry/team/posevit/latest.json",
    }
    assert result.uri == f"s3://{address.bucket}/{base}/" and sorted(result.uploaded) == sorted(files)
    latest = read_latest(client, address)
    assert latest["version"] == version and latest["metrics"] == {"accuracy": 0.9}
    manifest = json.loads(client.get_object(Bucket=address.bucket, Key=f"{base}/manifest.json")["Body"].read())
    assert manifest["files"]["models/model.safetensors"]["size"] == files["models/model.safetensors"].stat().st_size

    again = publish(client, address, version, files, progress=False)
    assert again.already_published and again.uploaded == []


def test_a_version_is_never_overwritten_with_different_content(aws_env, address, tmp_path):
    client = make_client()
    version, files = version_files(tmp_path, seed=0)
    publish(client, address, version, files, progress=False)
    latest_before = read_latest(client, address)

    files["metrics/test.json"].write_text(json.dumps({"accuracy": 0.1}))  # same bundle, other metrics
    with pytest.raises(S3Error, match="already published, and this push would change metrics/test.json .*train.seed"):
        publish(client, address, version, files, progress=False)
    # A stray object left in a version folder is not replaced either.
    stray = address.key("f" * 16, "models", "config.json")
    client.put_object(Bucket=address.bucket, Key=stray, Body=b"something else")
    other_version, other_files = version_files(tmp_path, seed=1)
    with pytest.raises(S3Error, match="already exists with different content"):
        publish(client, address, "f" * 16, other_files, progress=False)
    assert read_latest(client, address) == latest_before
    assert client.get_object(Bucket=address.bucket, Key=stray)["Body"].read() == b"something else"


def test_a_version_published_with_fewer_files_is_kept_and_the_push_says_what_it_lacks(aws_env, address, tmp_path):
    client = make_client()
    version, files = version_files(tmp_path, seed=0)
    publish(client, address, version, files, progress=False)  # as published before the export stage existed
    manifest = client.get_object(Bucket=address.bucket, Key=address.key(version, "manifest.json"))["Body"].read()
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"an export")
    again = publish(client, address, version, {**files, "exports/model.onnx": onnx}, progress=False)
    assert again.already_published and again.uploaded == [] and again.not_added == ["exports/model.onnx"]
    assert address.key(version, "exports/model.onnx") not in keys(client, address.bucket)
    assert (
        client.get_object(Bucket=address.bucket, Key=address.key(version, "manifest.json"))["Body"].read() == manifest
    )
    assert read_latest(client, address)["version"] == version
    # Fewer files than published, or one that differs, is still refused.
    with pytest.raises(S3Error, match="already published, and this push would change metrics/report.xlsx "):
        publish(
            client, address, version, {k: v for k, v in files.items() if k != "metrics/report.xlsx"}, progress=False
        )


def test_server_killed_mid_upload_keeps_latest_and_a_rerun_completes(aws_env, address, tmp_path):
    client = make_client(retries=1)
    first, first_files = version_files(tmp_path, seed=0)
    publish(client, address, first, first_files, progress=False)
    second, second_files = version_files(tmp_path, seed=1)

    seen = []

    def crash_during_weights(key: str, sent: int) -> None:
        if key.endswith("model.safetensors") and sent > 0 and not seen:
            seen.append(sent)
            aws_env.kill()  # SIGKILL the S3 server while the request body is streaming

    try:
        with pytest.raises(S3Error, match="cannot reach S3"):
            publish(client, address, second, second_files, progress=False, hook=crash_during_weights)
    finally:
        aws_env.start()
    assert seen and seen[0] < second_files["models/model.safetensors"].stat().st_size
    client = make_client()
    assert read_latest(client, address)["version"] == first
    assert not any(key.endswith(f"{second}/manifest.json") for key in keys(client, address.bucket))

    publish(client, address, second, second_files, progress=False)
    assert read_latest(client, address)["version"] == second
    fetched = fetch_model(client, address, cache_dir=tmp_path / "cache", progress=False)
    assert hash_directory(fetched / "models") == second


def test_fetch_verifies_before_anything_loads(aws_env, address, tmp_path):
    client = make_client()
    with pytest.raises(S3Error, match="no model published"):
        fetch_model(client, address, cache_dir=tmp_path / "cache")
    first, first_files = version_files(tmp_path, seed=0)
    second, second_files = version_files(tmp_path, seed=1)
    publish(client, address, first, first_files, progress=False)
    publish(client, address, second, second_files, progress=False)

    latest = fetch_model(client, address, cache_dir=tmp_path / "cache", progress=False)
    pinned = fetch_model(client, address, version=first, cache_dir=tmp_path / "cache", progress=False)
    assert latest.name == second and pinned.name == first
    assert load_bundle(pinned / "models").labels == load_bundle(first_files["models/config.json"].parent).labels
    assert (pinned / "models" / "model.safetensors").read_bytes() == first_files[
        "models/model.safetensors"
    ].read_bytes()

    # A damaged cache is downloaded again, not loaded.
    (pinned / "models" / "model.safetensors").write_bytes(b"garbage")
    again = fetch_model(client, address, version=first, cache_dir=tmp_path / "cache", progress=False)
    assert (again / "models" / "model.safetensors").read_bytes() == first_files["models/model.safetensors"].read_bytes()

    # Tampered bytes in S3 never reach the cache.
    weights_key = address.key(second, "models", "model.safetensors")
    client.delete_object(Bucket=address.bucket, Key=weights_key)
    client.put_object(Bucket=address.bucket, Key=weights_key, Body=b"tampered")
    with pytest.raises(S3Error, match="failed verification"):
        fetch_model(client, address, version=second, cache_dir=tmp_path / "fresh-cache", progress=False)
    assert not (tmp_path / "fresh-cache" / "posevit" / second).exists()
    with pytest.raises(S3Error, match="not a complete published version"):
        fetch_model(client, address, version="0" * 16, cache_dir=tmp_path / "cache", progress=False)


def test_a_fetch_can_leave_the_exports_in_s3_and_a_later_one_adds_them(aws_env, address, tmp_path):
    """The torch backend fetches no ONNX files; an ONNX backend later adds them and keeps the cached bundle."""
    client = make_client()
    version, files = version_files(tmp_path, seed=0)
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "model.onnx").write_bytes(b"onnx " * 1000)
    files["exports/model.onnx"] = exports / "model.onnx"
    publish(client, address, version, files, progress=False)
    cache = tmp_path / "cache"

    bundle_only = fetch_model(client, address, cache_dir=cache, progress=False, files=TORCH_FILES)
    assert not (bundle_only / "exports").exists() and hash_directory(bundle_only / "models") == version
    assert fetch_model(client, address, cache_dir=cache, progress=False, files=TORCH_FILES) == bundle_only

    # Replace the weights in S3: a fetch that downloaded them again would now fail verification.
    weights_key = address.key(version, "models", "model.safetensors")
    client.put_object(Bucket=address.bucket, Key=weights_key, Body=b"tampered")
    full = fetch_model(client, address, cache_dir=cache, progress=False)
    assert full == bundle_only and (full / "exports" / "model.onnx").read_bytes() == b"onnx " * 1000
    assert hash_directory(full / "models") == version  # the cached weights stayed
    with pytest.raises(S3Error, match="failed verification"):
        fetch_model(client, address, cache_dir=tmp_path / "fresh", progress=False)


def test_an_int8_fetch_takes_only_config_and_its_file_each_checked_by_sha256(aws_env, address, tmp_path):
    """The ONNX int8 backend needs neither the weights nor the fp32 export: they stay in S3; what it takes is
    verified file by file, and a later full fetch adds the weights and checks the bundle's hash."""
    client = make_client()
    version, files = publish_with_exports(client, address, tmp_path)
    int8_files = {"files": INT8_FILES, "optional": ["metrics/test.json", "metrics/report.xlsx", "exports/x"]}

    int8 = fetch_model(client, address, cache_dir=tmp_path / "cache", progress=False, **int8_files)
    assert cached_files(int8) == [
        "exports/model.int8.onnx",
        "manifest.json",
        "metrics/report.xlsx",
        "metrics/test.json",
        "models/config.json",
    ]
    full = fetch_model(client, address, cache_dir=tmp_path / "cache", progress=False)
    assert full == int8 and hash_directory(full / "models") == version

    client.put_object(Bucket=address.bucket, Key=address.key(version, "exports", "model.int8.onnx"), Body=b"x")
    with pytest.raises(S3Error, match="failed verification"):
        fetch_model(client, address, cache_dir=tmp_path / "fresh", progress=False, **int8_files)
    assert not (tmp_path / "fresh" / address.model_name / version).exists()  # nothing half-fetched is left


def test_switching_backends_keeps_both_backends_files_and_the_second_switch_downloads_nothing(
    aws_env, address, tmp_path
):
    """torch -> onnx-int8 -> torch -> onnx-int8 on one cache: each file is downloaded once, none is deleted,
    and what a backend needs is still checked against the manifest at every fetch."""
    client = make_client()
    downloads: list[str] = []
    client.meta.events.register(
        "before-parameter-build.s3.GetObject", lambda params, **_: downloads.append(params["Key"])
    )
    version, files = publish_with_exports(client, address, tmp_path)
    cache = tmp_path / "cache"
    folder = cache / address.model_name / version

    def fetch(backend_files: list[str]) -> list[str]:
        downloads.clear()
        assert fetch_model(client, address, version, cache, progress=False, files=backend_files) == folder
        return sorted(
            key.removeprefix(address.key(version) + "/") for key in downloads if "/models/" in key or "/exports/" in key
        )

    assert fetch(TORCH_FILES) == sorted(TORCH_FILES)
    assert fetch(INT8_FILES) == ["exports/model.int8.onnx"]  # the bundle's config.json was already verified
    assert fetch(TORCH_FILES) == [] and fetch(INT8_FILES) == []
    assert cached_files(folder) == ["exports/model.int8.onnx", "manifest.json", *sorted(TORCH_FILES)]
    for name in (*TORCH_FILES, *INT8_FILES):
        assert (folder / name).read_bytes() == files[name].read_bytes(), name
    assert hash_directory(folder / "models") == version

    # Still verified each time: a damaged cached weights file is fetched again, and only it.
    (folder / "models" / "model.safetensors").write_bytes(b"garbage")
    assert fetch(INT8_FILES) == []  # the int8 backend does not run the weights
    assert fetch(TORCH_FILES) == ["models/model.safetensors"]
    assert (folder / "exports" / "model.int8.onnx").is_file()


def test_a_version_without_the_files_a_backend_runs_says_which(aws_env, address, tmp_path):
    client = make_client()
    version, files = version_files(tmp_path, seed=0)  # published before the export stage existed
    publish(client, address, version, files, progress=False)
    with pytest.raises(NotPublished, match=r"posevit/\w+/ was published without exports/model.int8.onnx") as error:
        fetch_model(client, address, cache_dir=tmp_path / "cache", progress=False, files=INT8_FILES)
    assert error.value.names == ["exports/model.int8.onnx"]
    assert not (tmp_path / "cache" / address.model_name / version).exists()
