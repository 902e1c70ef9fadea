"""What `posevit predict` reads: local files, folders and globs, and S3 prefixes, expanded into inputs in a
stable order; a deterministic shard of them; and each input's bytes.

    photos/                      every image file under photos/ (recursive, by suffix)
    'shoots/**/*.jpg'            a glob (`**` recurses)
    s3://bucket/prefix/          every image object under the prefix (the project's S3 client: boto3's
                                 credential chain, the endpoint from AWS_ENDPOINT_URL(_S3) or the profile)

A shard keeps the inputs whose path hashes to I modulo N (`--shard I/N`). A hash, not the position in the
list: each task of an array job lists the inputs itself, maybe while files arrive, and a path's shard must
not move when others appear (by position, one new file would shift every later one to another shard, and
some would be classified twice and others never). Shards are even to within sampling noise.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from posevit.core.config import Shard

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_SCHEME = "s3://"


def image_extensions() -> frozenset[str]:
    """Suffixes of every format PIL can open (a folder's other files are not images and are skipped)."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


@dataclass(frozen=True)
class Input:
    path: str  # as given or found; an S3 object's s3://bucket/key
    problem: str | None = None  # set when the argument named nothing readable


@dataclass(frozen=True)
class Expanded:
    inputs: list[Input]
    skipped: int  # files inside folders (or objects under prefixes) that are not images by their suffix


def split_s3_uri(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key)."""
    bucket, _, key = uri.removeprefix(S3_SCHEME).partition("/")
    return bucket, key


class S3Objects:
    """One S3 client for listing and reading, made on first use; a forked process makes its own
    (a client's connections must not be shared across processes)."""

    def __init__(self) -> None:
        self._client: S3Client | None = None
        self._pid = 0

    @property
    def client(self) -> S3Client:
        if self._client is None or self._pid != os.getpid():
            from posevit.publish.s3 import make_client

            self._client, self._pid = make_client(), os.getpid()
        return self._client

    def list_keys(self, uri: str) -> list[str]:
        """Every key under the prefix, in S3's (lexicographic) order."""
        from posevit.publish.s3 import s3_errors

        bucket, prefix = split_s3_uri(uri)
        keys: list[str] = []
        with s3_errors(self.client, f"listing {uri}", bucket):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/")]
        return keys

    def read(self, uri: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = split_s3_uri(uri)
        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            raise OSError("no such object" if code in {"404", "NoSuchKey"} else f"S3 said {code}") from None
        except BotoCoreError as exc:
            raise OSError(f"S3 read failed ({type(exc).__name__})") from None


def expand_inputs(arguments: Sequence[str], s3: S3Objects | None = None) -> Expanded:
    """Files as given, folders recursively (image suffixes only), globs (`**` recurses), S3 prefixes;
    each path once, in order. Listing an S3 prefix that cannot be listed raises S3Error (a bad run)."""
    extensions = image_extensions()
    inputs: dict[str, Input] = {}
    skipped = 0

    def add_found(paths: Sequence[str]) -> None:
        nonlocal skipped
        for path in paths:
            if Path(path).suffix.lower() in extensions:
                inputs.setdefault(path, Input(path))
            else:
                skipped += 1

    for argument in arguments:
        path = Path(argument)
        if argument.startswith(S3_SCHEME):
            s3 = s3 or S3Objects()
            bucket, prefix = split_s3_uri(argument)
            folder = prefix if prefix.endswith("/") or not prefix else prefix + "/"
            keys = s3.list_keys(f"{S3_SCHEME}{bucket}/{folder}")
            if keys or prefix.endswith("/") or not prefix:
                add_found([f"{S3_SCHEME}{bucket}/{key}" for key in keys])
            else:  # s3://bucket/photo.jpg: one object (a missing one becomes a row when read)
                inputs.setdefault(argument, Input(argument))
        elif path.is_dir():
            add_found([str(p) for p in sorted(path.rglob("*")) if p.is_file()])
        elif path.is_file():
            inputs.setdefault(argument, Input(argument))
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                inputs.setdefault(argument, Input(argument, "the pattern matched no files"))
            for match in matches:
                if Path(match).is_dir():
                    add_found([str(p) for p in sorted(Path(match).rglob("*")) if p.is_file()])
                else:
                    inputs.setdefault(match, Input(match))
        else:
            inputs.setdefault(argument, Input(argument, "no such file or folder"))
    return Expanded(list(inputs.values()), skipped)


def shard_of(path: str, count: int) -> int:
    """The shard `path` belongs to: its BLAKE2 hash modulo `count` (the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(path.encode("utf-8"), digest_size=8).digest(), "big") % count


def select_shard(inputs: Sequence[Input], shard: Shard | None) -> list[Input]:
    """The inputs of `shard` (all when None), in their order."""
    if shard is None:
        return list(inputs)
    return [item for item in inputs if shard_of(item.path, shard.total) == shard.number]


def read_input(path: str, s3: S3Objects | None) -> bytes:
    """The bytes of a local file or an S3 object; OSError when they cannot be read."""
    if path.startswith(S3_SCHEME):
        return (s3 or S3Objects()).read(path)
    return Path(path).read_bytes()
