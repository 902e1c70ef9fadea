"""Content hashes that name versions: same bytes, same hash, wherever they are."""

from __future__ import annotations

import hashlib
from pathlib import Path


def hash_directory(directory: Path, length: int = 16) -> str:
    """sha256 over every file's relative path and bytes, in sorted order (first `length` hex digits)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()[:length]
