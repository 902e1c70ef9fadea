"""How a registry model is named: its S3 address, and a version or pointer inside it.

    s3://BUCKET/PREFIX/NAME:latest    the latest version published there (bare: the same)
    s3://BUCKET/PREFIX/NAME:ALIAS     the version an alias (production, staging...) points at
    s3://BUCKET/PREFIX/NAME@VERSION   one version
    registry[:VERSION|:ALIAS]         the same at the project's push.* (params.yaml in the working directory)

Serving (`infer.model_source`) and the `posevit registry` command both read names through this module;
it imports no S3 client, so naming a model costs nothing until it is fetched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, create_model

from posevit.core.config import PushConfig
from posevit.core.errors import ConfigError, PosevitError
from posevit.core.paths import PARAMS_FILE

ALIAS_NAME = re.compile(r"[a-z][a-z0-9-]*")  # latest, production, staging, canary-2...
REGISTRY_KEYS = ("bucket", "prefix", "model_name", "endpoint_url", "region")
URI_FORMS = "s3://BUCKET/PREFIX/NAME:latest or s3://BUCKET/PREFIX/NAME@VERSION or s3://BUCKET/PREFIX/NAME:ALIAS"


class ModelSourceError(PosevitError):
    """No model could be found where the app was told to look."""


@dataclass(frozen=True)
class ModelAddress:
    """Where one model's versions live in S3."""

    bucket: str
    prefix: str
    model_name: str

    def key(self, *parts: str) -> str:
        return "/".join(part.strip("/") for part in (self.prefix, self.model_name, *parts) if part.strip("/"))

    def uri(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"


@dataclass(frozen=True)
class Registry:
    """A registry and how to reach it: endpoint and region None mean the AWS chain's own."""

    address: ModelAddress
    endpoint_url: str | None = None
    region: str | None = None


def parse_s3_uri(uri: str) -> tuple[ModelAddress, str]:
    """`s3://bucket/prefix/name@version`, `...:latest`, `...:alias` (bare: latest) -> (address, version or pointer).

    A pointer name (`latest` or an alias) comes back as it is; `aliases.resolve_name` turns it into a version."""
    path, at, version = uri.removeprefix("s3://").partition("@")
    if not at:
        path, colon, version = path.partition(":")
        version = version if colon else "latest"
    bucket, _, key = path.strip("/").partition("/")
    prefix, _, name = key.rpartition("/")
    valid_name = bool(version) and "/" not in version and "@" not in version and ":" not in version
    if not (bucket and name and valid_name) or ":" in path or not (at or ALIAS_NAME.fullmatch(version)):
        raise ModelSourceError(f"{uri!r} is not a model URI: write {URI_FORMS}")
    return ModelAddress(bucket, prefix, name), version


# Where a project's pushes publish: push.*'s own fields and rules, without the publishing conditions.
_LOCATION_FIELDS: dict[str, Any] = {
    name: (PushConfig.model_fields[name].annotation, PushConfig.model_fields[name]) for name in REGISTRY_KEYS
}
RegistryLocation = create_model("RegistryLocation", **_LOCATION_FIELDS)


def project_registry(params: Path = PARAMS_FILE) -> tuple[ModelAddress, str | None, str]:
    """Where the project's pushes publish, (address, endpoint_url, region), from params.yaml's push.* alone:
    nothing else (no stage's config, not even push's conditions) is validated."""
    if not params.is_file():
        raise ModelSourceError(
            f"`registry` is the project's push.* in {params}, and there is no {params} in this directory "
            f"(outside the project): name the model by URI, {URI_FORMS}, or pass a bundle folder"
        )
    raw = (yaml.safe_load(params.read_text(encoding="utf-8")) or {}).get("push")
    try:
        push = RegistryLocation.model_validate(raw).model_dump()
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in ("push", *problem["loc"]))
        raise ConfigError(f"{params}: {where}: {problem['msg']} (fix conf/push/, then `make params`)") from None
    return ModelAddress(push["bucket"], push["prefix"], push["model_name"]), push["endpoint_url"], push["region"]


def parse_registry(spec: str) -> tuple[Registry, str | None]:
    """A registry named as a model is, `s3://BUCKET/PREFIX/NAME[:NAME|@VERSION]` or `registry[:NAME]`:
    (the registry, the version or pointer named after it, None when none was)."""
    if spec == "registry" or spec.startswith("registry:"):
        address, endpoint_url, region = project_registry()
        return Registry(address, endpoint_url, region), spec.partition(":")[2] or None
    if spec.startswith("s3://"):
        named = "@" in spec or ":" in spec.removeprefix("s3://")
        address, version = parse_s3_uri(spec)
        return Registry(address), version if named else None
    raise ModelSourceError(f"{spec!r} names no registry: write s3://BUCKET/PREFIX/NAME, or `registry` in the project")
