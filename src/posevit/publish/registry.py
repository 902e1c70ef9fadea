"""The S3 model registry: publish a bundle as an immutable version, move `latest`, fetch verified.

Layout under s3://{bucket}/{prefix}/{model_name}/:

    {version}/models/...         the bundle (sub-folders kept), version = content hash of models/
    {version}/metrics/...        test metrics and the report that justified publishing it
    {version}/exports/...        the ONNX exports made from that bundle (and their parity metrics)
    {version}/manifest.json      sha256 and size of every file; written last, so it marks a complete version
    latest.json                  points to a complete version; replaced only after a verified upload

A version is never overwritten: every object is written with `If-None-Match: *`, and one that is
already there (left by an interrupted run) is kept only if its checksum is the one expected.
Publishing a version again with more files than it was published with (a version from before the
export stage existed) changes nothing and says which files the published version lacks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from botocore.exceptions import ClientError
from tqdm import tqdm

from posevit.core.hashing import hash_directory
from posevit.core.paths import cache_root
from posevit.publish.location import ModelAddress
from posevit.publish.s3 import S3Error, error_code, is_missing, s3_errors

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import HeadObjectOutputTypeDef

REGISTRY_FORMAT = "posevit-registry/1"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest.json"
BUNDLE_SUBDIR = "models"

ProgressHook = Callable[[str, int], None]  # (key, bytes of that key sent so far)


class ManifestEntry(TypedDict):
    sha256: str
    size: int


class Manifest(TypedDict):
    """`{version}/manifest.json`: what a complete version holds (+ what the publisher said of it, `details`)."""

    format: str
    version: str
    files: dict[str, ManifestEntry]  # path inside the version folder -> checksum and size
    published_at: NotRequired[str]  # ISO 8601 UTC; versions published before it existed have none
    details: NotRequired[dict[str, Any]]  # e.g. the push stage's metrics and gate (publish.catalog reads them)


class LatestRecord(TypedDict, total=False):
    """`latest.json`: the newest complete version (plus whatever record the publisher adds, e.g. metrics)."""

    format: str
    version: str
    uri: str
    manifest: str
    published_at: str
    metrics: Any


@dataclass(frozen=True)
class PublishResult:
    version: str
    uri: str
    uploaded: list[str]
    already_published: bool
    not_added: list[str]  # files given that the already published version lacks (it is never changed)


def utc_now() -> str:
    """Now as ISO 8601 UTC to the millisecond: records sort by it (two publishes in one second too)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_manifest(version: str, files: dict[str, Path]) -> Manifest:
    """sha256 and size of each file, keyed by its path inside the version folder."""
    entries = {
        name: ManifestEntry(sha256=sha256_file(path), size=path.stat().st_size) for name, path in sorted(files.items())
    }
    return Manifest(format=REGISTRY_FORMAT, version=version, files=entries)


class _ProgressReader:
    """A file that reports every read, so uploads drive a progress bar (and the fault test's hook)."""

    def __init__(self, handle, key: str, bar: tqdm, hook: ProgressHook | None) -> None:
        self._handle, self._key, self._bar, self._hook, self._sent = handle, key, bar, hook, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._sent += len(chunk)
        self._bar.update(len(chunk))
        if self._hook is not None and chunk:
            self._hook(self._key, self._sent)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0 and offset == 0:  # a retry rewinds: take the bytes back off the bar
            self._bar.update(-self._sent)
            self._sent = 0
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()


def _head(client: S3Client, bucket: str, key: str) -> HeadObjectOutputTypeDef | None:
    try:
        return client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise


def _stored_sha256(head: HeadObjectOutputTypeDef) -> str | None:
    """The object's sha256 as hex: S3's own checksum if it keeps one, else the metadata we wrote."""
    if head.get("ChecksumSHA256") and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
        return base64.b64decode(head["ChecksumSHA256"]).hex()
    return head.get("Metadata", {}).get("sha256")


def _get_json(client: S3Client, bucket: str, key: str) -> Any:  # parsed JSON (or None when missing)
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if is_missing(exc):
            return None
        raise
    return json.loads(body)


def _put_once(client: S3Client, bucket: str, key: str, body, sha256: str, size: int) -> bool:
    """Write `key` unless it exists; an existing object must hold the same bytes. True if written."""
    head = _head(client, bucket, key)
    if head is None:
        try:
            client.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentLength=size,
                IfNoneMatch="*",
                ChecksumSHA256=base64.b64encode(bytes.fromhex(sha256)).decode(),
                Metadata={"sha256": sha256},
            )
            return True
        except ClientError as exc:
            if error_code(exc) not in {"PreconditionFailed", "ConditionalRequestConflict"}:
                raise
            head = _head(client, bucket, key)  # written by someone else meanwhile: check it below
    if head is None or _stored_sha256(head) != sha256 or head.get("ContentLength") != size:
        raise S3Error(
            f"s3://{bucket}/{key} already exists with different content; a published version is "
            f"never overwritten (delete that version by hand if it is really broken)"
        )
    return False


def _verify(client: S3Client, bucket: str, key: str, sha256: str, size: int) -> None:
    """Check what S3 now stores under `key` against the local checksum (download if S3 keeps none)."""
    head = _head(client, bucket, key)
    if head is None:
        raise S3Error(f"s3://{bucket}/{key} is missing right after its upload")
    stored = _stored_sha256(head) if head.get("ChecksumSHA256") else None
    if stored is None:
        digest = hashlib.sha256()
        for chunk in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(1 << 20):
            digest.update(chunk)
        stored = digest.hexdigest()
    if stored != sha256 or head.get("ContentLength") != size:
        raise S3Error(
            f"s3://{bucket}/{key} does not match the local file after upload (sha256 {stored} "
            f"!= {sha256}); latest.json was left as it was"
        )


def read_latest(client: S3Client, address: ModelAddress) -> LatestRecord | None:
    """The latest.json record, or None when nothing was published yet."""
    with s3_errors(client, f"reading {address.uri(LATEST_FILE)}", address.bucket):
        return _get_json(client, address.bucket, address.key(LATEST_FILE))


def publish(
    client: S3Client,
    address: ModelAddress,
    version: str,
    files: dict[str, Path],
    record: dict[str, Any] | None = None,
    progress: bool = True,
    hook: ProgressHook | None = None,
    details: dict[str, Any] | None = None,
) -> PublishResult:
    """Upload `files` (name inside the version folder -> local path) as `version`, verify, then move latest.

    `record` joins latest.json; `details` (metrics, the gate it passed) join the version's manifest for good."""
    bucket = address.bucket
    published_at = utc_now()
    manifest = build_manifest(version, files)
    manifest["published_at"] = published_at
    if details:
        manifest["details"] = details
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    uploaded: list[str] = []
    with s3_errors(client, f"checking bucket {bucket!r}", bucket):
        client.head_bucket(Bucket=bucket)
    with s3_errors(client, f"publishing {address.uri(version)}", bucket):
        existing = _get_json(client, bucket, address.key(version, MANIFEST_FILE))
        not_added: list[str] = []
        if existing is not None:
            published = existing.get("files", {})
            changed = sorted(name for name, entry in published.items() if manifest["files"].get(name) != entry)
            if changed:
                raise S3Error(
                    f"{address.uri(version)} is already published, and this push would change "
                    f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''} (same model; other metrics, report "
                    "or exports, e.g. after a posevit upgrade). A version is never overwritten: the published one "
                    "keeps serving; to publish these files, make a new version (retrain with any change of params "
                    "or data, e.g. -S train.seed=1)"
                )
            not_added = sorted(set(manifest["files"]) - set(published))
        if existing is None:
            total = sum(entry["size"] for entry in manifest["files"].values())
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"upload {version}", disable=not progress) as bar:
                for name, path in sorted(files.items()):
                    entry = manifest["files"][name]
                    key = address.key(version, name)
                    with path.open("rb") as handle:
                        if _put_once(
                            client, bucket, key, _ProgressReader(handle, key, bar, hook), entry["sha256"], entry["size"]
                        ):
                            uploaded.append(name)
                        else:
                            bar.update(entry["size"])
            for name, entry in manifest["files"].items():
                _verify(client, bucket, address.key(version, name), entry["sha256"], entry["size"])
            _put_once(
                client,
                bucket,
                address.key(version, MANIFEST_FILE),
                manifest_bytes,
                hashlib.sha256(manifest_bytes).hexdigest(),
                len(manifest_bytes),
            )
        latest = {
            "format": REGISTRY_FORMAT,
            "version": version,
            "uri": address.uri(version) + "/",
            "manifest": address.uri(version, MANIFEST_FILE),
            "published_at": published_at,
            **(record or {}),
        }
        client.put_object(
            Bucket=bucket,
            Key=address.key(LATEST_FILE),
            Body=json.dumps(latest, indent=2).encode(),
            ContentType="application/json",
        )
    return PublishResult(version, address.uri(version) + "/", uploaded, existing is not None, not_added)


def _file_ok(path: Path, entry: Any) -> bool:
    return path.is_file() and path.stat().st_size == entry["size"] and sha256_file(path) == entry["sha256"]


class NotPublished(S3Error):
    """The version exists but was published without files the caller needs (e.g. before the export stage)."""

    def __init__(self, uri: str, names: list[str]) -> None:
        super().__init__(f"{uri} was published without {', '.join(names)}")
        self.names = names


def _wanted(manifest: Manifest, uri: str, files: Iterable[str] | None, optional: Iterable[str]) -> list[str]:
    """The manifest's names to fetch: `files` (all when None), each required, and those of `optional` it has."""
    published = manifest["files"]
    if files is None:
        return sorted(published)
    required = sorted(set(files))
    if absent := [name for name in required if name not in published]:
        raise NotPublished(uri, absent)
    return sorted({*required, *(name for name in optional if name in published)})


def _verified(directory: Path, manifest: Manifest, names: Iterable[str]) -> bool:
    """Every file of `names` is present with its manifest sha256, and, when the whole bundle is there,
    it hashes to the version (an ONNX backend leaves the weights in S3: then the sha256s alone vouch)."""
    if not all(_file_ok(directory / name, manifest["files"][name]) for name in names):
        return False
    bundle = [name for name in manifest["files"] if name.startswith(f"{BUNDLE_SUBDIR}/")]
    whole = all((directory / name).is_file() for name in bundle)
    return not whole or hash_directory(directory / BUNDLE_SUBDIR) == manifest["version"]


def _link_or_copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)  # no second copy of the weights on disk
    except OSError:
        shutil.copy2(source, destination)


def fetch_model(
    client: S3Client,
    address: ModelAddress,
    version: str = "latest",
    cache_dir: Path | None = None,
    progress: bool = True,
    files: Iterable[str] | None = None,
    optional: Iterable[str] = (),
) -> Path:
    """Download a published version (or the latest) into `cache_dir`, verified; return its folder.

    `files` names what the caller needs inside the version folder (all of it when None: a backend declares
    its own, `infer.backends.BACKEND_FILES`); each must be published (else `NotPublished`), and the names
    in `optional` come along when the version has them. The bundle is `<returned folder>/models`. Nothing
    is returned, so nothing is loaded, unless every file needed matches the manifest's sha256 and a
    whole bundle hashes to the version's name. The cache of a version only grows: a later fetch for other
    files (another backend's) adds what is missing and keeps every file it holds intact.
    """
    if version == "latest":
        latest = read_latest(client, address)
        if latest is None:
            raise S3Error(f"no model published at {address.uri()}/ yet: run the push stage (`dvc repro push`)")
        version = latest["version"]
    target = (cache_root() / "registry" if cache_dir is None else Path(cache_dir)) / address.model_name / version
    uri = address.uri(version) + "/"
    if (target / MANIFEST_FILE).is_file():
        cached: Manifest = json.loads((target / MANIFEST_FILE).read_text())
        if _verified(target, cached, _wanted(cached, uri, files, optional)):
            return target
    with s3_errors(client, f"fetching {address.uri(version)}", address.bucket):
        manifest = _get_json(client, address.bucket, address.key(version, MANIFEST_FILE))
        if manifest is None:
            raise S3Error(f"{address.uri(version)} is not a complete published version (no {MANIFEST_FILE})")
        names = _wanted(manifest, uri, files, optional)
        # Built beside the cache entry and swapped in whole: a killed fetch never leaves a half version.
        partial = target.with_name(f".{version}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        # Every file the cache holds intact stays, needed now or not (the other backend's, fetched before).
        kept = [name for name in manifest["files"] if _file_ok(target / name, manifest["files"][name])]
        for name in kept:
            _link_or_copy(target / name, partial / name)
        missing = [name for name in names if name not in kept]
        total = sum(manifest["files"][name]["size"] for name in missing)
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"fetch {version}", disable=not progress) as bar:
            for name in missing:
                destination = partial / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                body = client.get_object(Bucket=address.bucket, Key=address.key(version, name))["Body"]
                with destination.open("wb") as handle:
                    for chunk in body.iter_chunks(1 << 20):
                        handle.write(chunk)
                        bar.update(len(chunk))
    (partial / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    # The kept files were checked against the manifest as they were linked: only the downloads remain.
    if not _verified(partial, manifest, missing):
        shutil.rmtree(partial, ignore_errors=True)
        raise S3Error(
            f"{address.uri(version)} failed verification: a file does not match its sha256 in "
            f"{MANIFEST_FILE}, or the bundle does not hash to {version}; nothing was loaded"
        )
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)
    return target
