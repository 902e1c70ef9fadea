"""The alias a served model was named by, and reading it cheaply (what `serve.follow` polls).

    s3://BUCKET/PREFIX/NAME:ALIAS   (bare s3://BUCKET/PREFIX/NAME: latest)   the pointer object in that registry
    registry[:ALIAS]                the same at the project's push.* (params.yaml in the working directory)

`latest` is `{prefix}/{name}/latest.json`; any other alias is `{prefix}/{name}/aliases/{alias}.json`. Each
holds the version it points to. A version pinned by `@VERSION` (or `registry:<16 hex digits>`), a folder or a
DVC revision names no alias: there is nothing to follow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from posevit.core.errors import ConfigError
from posevit.publish import aliases
from posevit.publish.location import ModelAddress, ModelSourceError, parse_registry

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

VERSION = re.compile(r"^[0-9a-f]{16}$")  # a bundle's content hash (core.hashing.hash_directory)


@dataclass(frozen=True)
class Pointer:
    """One alias of one model in one registry."""

    address: ModelAddress
    alias: str
    endpoint_url: str | None = None
    region: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.address.bucket}/{aliases.pointer_key(self.address, self.alias)}"


def alias_of(spec: str) -> str | None:
    """The alias the model spec names (`latest` when an S3 URI or `registry` names none), or None (a pinned version,
    a folder, a DVC revision, auto)."""
    if spec.startswith("s3://"):
        if "@" in spec:
            return None
        return spec.removeprefix("s3://").partition(":")[2] or "latest"
    if spec == "registry" or spec.startswith("registry:"):
        name = spec.partition(":")[2] or "latest"
        return None if VERSION.match(name) else name
    return None


def pointer_of(spec: str) -> Pointer | None:
    """Where the alias `spec` names lives, or None when it names none (see `alias_of`)."""
    alias = alias_of(spec)
    if alias is None:
        return None
    if not aliases.ALIAS_NAME.fullmatch(alias):
        raise ConfigError(f"{spec!r}: alias {alias!r} is not an alias name (lower-case letters, digits and -)")
    registry, _ = parse_registry(spec)
    return Pointer(registry.address, alias, registry.endpoint_url, registry.region)


def read_pointer(client: S3Client, pointer: Pointer, etag: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """(the alias object's record, its ETag); (None, `etag`) when it is unchanged since `etag`: a conditional GET
    (If-None-Match), which S3 answers 304 without a body."""
    record, new_etag = aliases.read_pointer(client, pointer.address, pointer.alias, etag)
    if new_etag is None:
        raise ModelSourceError(
            f"{pointer.uri} does not exist: no version carries alias {pointer.alias!r} there yet "
            f"(`posevit registry promote VERSION --to {pointer.alias}`, or publish one for latest)"
        )
    if record is not None and not isinstance(record.get("version"), str):
        raise ModelSourceError(f"{pointer.uri} names no version (a JSON object with a `version` string)")
    return record, new_etag
