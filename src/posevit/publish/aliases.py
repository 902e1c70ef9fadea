"""Named pointers to versions (`production`, `staging`), moved atomically, with an append-only history.

Layout under s3://{bucket}/{prefix}/{model_name}/:

    latest.json                           the built-in pointer: moved by every publish (registry.publish)
    aliases/{alias}.json                  the alias's pointer: the record of the move that set it
    aliases/{alias}.history/{move}.json   one immutable object per move (move = 000001, 000002, ...)

A move is a conditional write on the pointer object: `If-Match` its ETag as the mover read it
(`If-None-Match: *` when the alias is new), so of two people promoting at once exactly one wins and
the other gets `AliasConflict` naming who moved it. S3 ETags of plain PUTs are content hashes
(SeaweedFS: the MD5), so every record carries a fresh `move_id`: no two records have the same bytes,
and an old ETag never matches again. The pointer record holds the whole move (from, to, when, who,
why), and the history object with its number is written after it with `If-None-Match: *`; a mover
killed between the two leaves the pointer complete, and the next move (or `history`) writes the
missing history object from it, so no move is lost.
"""

from __future__ import annotations

import getpass
import json
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict, cast

from botocore.exceptions import ClientError

from posevit.publish.location import ALIAS_NAME, ModelAddress
from posevit.publish.registry import LATEST_FILE, MANIFEST_FILE, utc_now
from posevit.publish.s3 import S3Error, error_code, is_missing, s3_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ALIAS_FORMAT = "posevit-alias/1"
LATEST = "latest"
ALIASES_DIR = "aliases"
PRECONDITION_FAILED = {"PreconditionFailed", "ConditionalRequestConflict", "412"}


class AliasRecord(TypedDict):
    """`aliases/{alias}.json` and each `aliases/{alias}.history/{move}.json`: one move of the alias."""

    format: str
    alias: str
    version: str  # where the alias points after this move ("to")
    moved_at: str  # ISO 8601 UTC
    by: str
    message: str
    move: int  # 1 for the move that created the alias, then 2, 3, ...
    move_id: str  # unique per move: the record's bytes (and so its ETag) are never repeated
    from_version: str | None  # where it pointed before ("from"); None for the first move


class AliasError(S3Error):
    """A bad alias name, or a move the registry cannot make (no such version, no history to roll back)."""


class AliasConflict(AliasError):
    """Someone else moved the alias between reading it and writing it: read again, decide again."""


def check_alias_name(alias: str, movable: bool = True) -> str:
    """`alias` if it is a valid name (`[a-z][a-z0-9-]*`); `latest` is valid but moves only with a publish."""
    if not ALIAS_NAME.fullmatch(alias):
        raise AliasError(
            f"alias {alias!r} is not a valid name: use lower-case letters, digits and '-', e.g. production"
        )
    if movable and alias == LATEST:
        raise AliasError("alias 'latest' is built in: every publish moves it; pick another name, e.g. staging")
    return alias


def pointer_key(address: ModelAddress, name: str) -> str:
    """The object behind `name`: latest.json, or aliases/{name}.json."""
    check_alias_name(name, movable=False)
    return address.key(LATEST_FILE) if name == LATEST else address.key(ALIASES_DIR, f"{name}.json")


def history_key(address: ModelAddress, alias: str, move: int) -> str:
    return address.key(ALIASES_DIR, f"{alias}.history", f"{move:06d}.json")


def read_pointer(
    client: S3Client, address: ModelAddress, name: str, etag: str | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """The pointer `name` (`latest` or an alias) as (record, etag), by a conditional GET.

    Three answers, told apart by which half is None:
        (record, etag)   the pointer as it is now (first read, or it moved since `etag`)
        (None, etag)     unchanged: `etag` was given and still matches (S3 answered 304, no body sent)
        (None, None)     missing: no such pointer (nothing published yet, or the alias was never set)
    Any other S3 failure raises S3Error. Every record has `version`; an alias's is an AliasRecord, latest's
    is latest.json (`version`, `published_at`, `metrics`...).
    """
    key = pointer_key(address, name)
    with s3_errors(client, f"reading s3://{address.bucket}/{key}", address.bucket):
        try:
            if etag:
                response = client.get_object(Bucket=address.bucket, Key=key, IfNoneMatch=etag)
            else:
                response = client.get_object(Bucket=address.bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) in {"304", "NotModified"}:
                return None, etag
            if is_missing(exc):
                return None, None
            raise
        return json.loads(response["Body"].read()), response["ETag"]


def _read_alias(client: S3Client, address: ModelAddress, alias: str) -> tuple[AliasRecord | None, str | None]:
    record, etag = read_pointer(client, address, alias)
    return cast(AliasRecord | None, record), etag


def _version_exists(client: S3Client, address: ModelAddress, version: str) -> bool:
    try:
        client.head_object(Bucket=address.bucket, Key=address.key(version, MANIFEST_FILE))
    except ClientError as exc:
        if is_missing(exc):
            return False
        raise
    return True


def _write_history(client: S3Client, address: ModelAddress, record: AliasRecord) -> None:
    """The move's immutable history object; already there (a repair, or the mover itself) is fine."""
    try:
        client.put_object(
            Bucket=address.bucket,
            Key=history_key(address, record["alias"], record["move"]),
            Body=json.dumps(record, indent=2).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except ClientError as exc:
        if error_code(exc) not in PRECONDITION_FAILED:
            raise


def _last_history_move(client: S3Client, address: ModelAddress, alias: str) -> int:
    """The highest move number in the alias's history (0: none): an alias whose pointer was deleted by hand
    and is set again continues its history instead of writing over it."""
    prefix = address.key(ALIASES_DIR, f"{alias}.history") + "/"
    numbers = [
        int(item["Key"].removeprefix(prefix).removesuffix(".json"))
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=address.bucket, Prefix=prefix)
        for item in page.get("Contents", [])
        if item["Key"].removeprefix(prefix).removesuffix(".json").isdigit()
    ]
    return max(numbers, default=0)


def default_mover() -> str:
    """Who moves an alias when `--by` is not given: the OS user name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name (a container with an arbitrary uid)
        return "unknown"


def move_alias(
    client: S3Client,
    address: ModelAddress,
    alias: str,
    version: str,
    by: str | None = None,
    message: str = "",
    expected_etag: str | None = None,
) -> AliasRecord:
    """Point `alias` at `version` if the alias is still as the caller read it; return the move's record.

    `expected_etag` is the ETag `read_pointer` gave for the alias (None: the caller saw no alias, so it
    is created). When someone else moved it since, nothing is written and AliasConflict says who did.
    """
    check_alias_name(alias)
    key = pointer_key(address, alias)
    where = f"s3://{address.bucket}/{key}"
    with s3_errors(client, f"moving alias {alias!r} at {address.uri()}/", address.bucket):
        if not _version_exists(client, address, version):
            raise AliasError(f"{address.uri(version)} is not a complete published version (no {MANIFEST_FILE})")
        current, etag = _read_alias(client, address, alias)
        if etag != expected_etag:
            raise _conflict(alias, where, current)
        if current is not None:
            _write_history(client, address, current)  # repairs a move whose mover died before its history
        record = AliasRecord(
            format=ALIAS_FORMAT,
            alias=alias,
            version=version,
            moved_at=utc_now(),
            by=by or default_mover(),
            message=message,
            move=(current["move"] if current else _last_history_move(client, address, alias)) + 1,
            move_id=uuid.uuid4().hex,
            from_version=current["version"] if current else None,
        )
        body, kind = json.dumps(record, indent=2).encode(), "application/json"
        try:
            if expected_etag:
                client.put_object(Bucket=address.bucket, Key=key, Body=body, ContentType=kind, IfMatch=expected_etag)
            else:
                client.put_object(Bucket=address.bucket, Key=key, Body=body, ContentType=kind, IfNoneMatch="*")
        except ClientError as exc:
            if error_code(exc) not in PRECONDITION_FAILED:
                raise
            raise _conflict(alias, where, read_pointer(client, address, alias)[0]) from None
        _write_history(client, address, record)
    return record


def _conflict(alias: str, where: str, current: Mapping[str, Any] | None) -> AliasConflict:
    if current is None:
        now = "it has been removed"
    else:
        now = f"{current.get('by')} moved it to {current.get('version')} at {current.get('moved_at')}"
    return AliasConflict(
        f"alias {alias!r} changed while you were moving it ({where}: {now}); nothing was written: "
        f"look again (`posevit registry show {alias}`) and retry if it still makes sense"
    )


def history(client: S3Client, address: ModelAddress, alias: str) -> list[AliasRecord]:
    """Every move of `alias`, oldest first (the pointer's own record fills in a history object not yet written)."""
    check_alias_name(alias)
    prefix = address.key(ALIASES_DIR, f"{alias}.history") + "/"
    moves: dict[int, AliasRecord] = {}
    with s3_errors(client, f"reading the history of alias {alias!r}", address.bucket):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=address.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                record: AliasRecord = json.loads(
                    client.get_object(Bucket=address.bucket, Key=item["Key"])["Body"].read()
                )
                moves[record["move"]] = record
        current, _ = _read_alias(client, address, alias)
    if current is not None:
        moves.setdefault(current["move"], current)
    return [moves[move] for move in sorted(moves)]


def list_aliases(client: S3Client, address: ModelAddress) -> dict[str, AliasRecord]:
    """Every alias (not `latest`) and the record of its current move, by name."""
    prefix = address.key(ALIASES_DIR) + "/"
    found: dict[str, AliasRecord] = {}
    with s3_errors(client, f"listing the aliases at {address.uri()}/", address.bucket):
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=address.bucket, Prefix=prefix, Delimiter="/"
        ):
            for item in page.get("Contents", []):
                name = item["Key"].removeprefix(prefix).removesuffix(".json")
                if ALIAS_NAME.fullmatch(name):
                    record, _ = _read_alias(client, address, name)
                    if record is not None:
                        found[name] = record
    return found


def resolve_name(client: S3Client, address: ModelAddress, name: str) -> tuple[str, str | None]:
    """The version `name` means, (version, the pointer it was read through or None): `latest` and an alias
    that exists resolve through their pointer; anything else is a version's own name."""
    if name != LATEST and not ALIAS_NAME.fullmatch(name):
        return name, None
    record, _ = read_pointer(client, address, name)
    if record is not None:
        return record["version"], name
    if name == LATEST:
        raise S3Error(f"no model published at {address.uri()}/ yet: run the push stage (`dvc repro push`)")
    with s3_errors(client, f"looking for version {name!r}", address.bucket):
        if _version_exists(client, address, name):
            return name, None
    known = ", ".join(sorted(list_aliases(client, address))) or "none yet"
    raise AliasError(
        f"no alias and no version named {name!r} at {address.uri()}/ (its aliases: {known}); "
        f"see `posevit registry list {address.uri()}`"
    )
