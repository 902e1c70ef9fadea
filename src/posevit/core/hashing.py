"""Content hashes that name versions: same bytes, same hash, wherever they are."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def _add_file(digest: hashlib._Hash, name: str, path: Path) -> None:
    digest.update(name.encode() + b"\0")
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(b"\0")


def hash_directory(directory: Path, length: int = 16) -> str:
    """sha256 over every file's relative path and bytes, in sorted order (first `length` hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        _add_file(digest, path.relative_to(directory).as_posix(), path)
    return digest.hexdigest()[:length]


def hash_files(files: Iterable[Path], root: Path, length: int = 16) -> str:
    """The same hash over just `files` (all under `root`, named relative to it): what a loader read of a folder."""
    root = Path(root).resolve()
    named = sorted((Path(f).resolve().relative_to(root).as_posix(), Path(f)) for f in files)
    digest = hashlib.sha256()
    for name, path in named:
        _add_file(digest, name, path)
    return digest.hexdigest()[:length]
