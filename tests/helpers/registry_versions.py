"""Versions of a small real model in a real S3 registry (the SeaweedFS of tests/conftest.py), for the tests of a
server that follows an alias."""

from __future__ import annotations

import json
from pathlib import Path

from posevit.core.hashing import hash_directory
from posevit.publish.aliases import move_alias, read_pointer
from posevit.publish.registry import ModelAddress, publish
from tests.helpers.bundles import tiny_bundle


class TestRegistry:
    """Publishes tiny bundles (the torch backend's files) to `address`, as the push stage would."""

    __test__ = False  # not a pytest class

    def __init__(self, client, address: ModelAddress, workspace: Path) -> None:
        self.client, self.address, self.workspace = client, address, workspace

    def uri(self, alias: str = "latest") -> str:
        return f"s3://{self.address.bucket}/{self.address.key()}:{alias}"

    def publish(self, seed: int, input_size: int | None = None) -> str:
        """A decisive random model (moving latest to it); with `input_size`, its config claims a size its weights
        do not fit (it loads, and fails its first forward pass: a version that fails warm-up)."""
        models = tiny_bundle(self.workspace / f"v{seed}-{input_size}" / "models", seed=seed, head_scale=40.0)
        if input_size is not None:
            config = json.loads((models / "config.json").read_text())
            config["data_config"]["input_size"] = [3, input_size, input_size]
            (models / "config.json").write_text(json.dumps(config))
        version = hash_directory(models)
        publish(self.client, self.address, version, {f"models/{p.name}": p for p in models.iterdir()}, progress=False)
        return version

    def corrupt(self, version: str) -> None:
        """Overwrite the version's weights in S3 with other bytes: its manifest's sha256 no longer matches."""
        key = self.address.key(version, "models", "model.safetensors")
        self.client.put_object(Bucket=self.address.bucket, Key=key, Body=b"not the published weights" * 100)

    def move(self, alias: str, version: str, message: str = "") -> None:
        """Point `alias` at a published version, as `posevit registry promote` / `rollback` do (a conditional write
        on the alias as just read)."""
        _, etag = read_pointer(self.client, self.address, alias)
        move_alias(self.client, self.address, alias, version, by="test", message=message, expected_etag=etag)
