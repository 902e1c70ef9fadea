"""What preprocess read, named so that it changes when the data does (`metrics/data.json`'s `identity`):
the commit a hub dataset resolved to, a content hash of the files a local copy was read from, or the demo's
settings.

DVC reruns preprocess when the identity would change: `data.revision` is a param (a hub dataset is remote,
DVC cannot see it move, so an unpinned one gets a warning with the line that pins it), and local copies live
under `data/raw/`, a dep of the stage.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets

from posevit.core.config import DataConfig
from posevit.core.errors import DataError
from posevit.core.hashing import hash_directory, hash_files
from posevit.core.paths import RAW_DIR

log = logging.getLogger(__name__)

COMMIT = re.compile(r"[0-9a-f]{40}")
CARD_FILES = ("README.md", ".huggingface.yaml", "dataset_infos.json")  # what datasets reads besides the data
_warned: set[tuple[str, str]] = set()  # (what, name): each warning once per process


def _warn_once(what: str, name: str, message: str, *args: object) -> None:
    if (what, name) not in _warned:
        _warned.add((what, name))
        log.warning(message, *args)


def hub_identity(cfg: DataConfig, builder: datasets.DatasetBuilder) -> dict[str, Any]:
    """A hub dataset: the commit datasets resolved (`builder.hash`: datasets names a hub dataset's module, and its
    cache folder, by the commit it fixed for the load, also when it reads that cache offline)."""
    resolved = builder.hash if isinstance(builder.hash, str) and COMMIT.fullmatch(builder.hash) else None
    if cfg.revision and COMMIT.fullmatch(cfg.revision) and resolved and resolved != cfg.revision:
        raise DataError(
            f"data.revision={cfg.revision} but datasets loaded {cfg.name} at commit {resolved} (offline, the cache "
            "holds only that one): go online once, or set data.revision to the commit you have"
        )
    if cfg.revision is None:
        _warn_once(
            "unpinned",
            cfg.name,
            "data.name=%s has no data.revision: this run read commit %s, and the hub's main may move without DVC "
            "seeing it. Pin it: `dvc exp run -S data.revision=%s` (or `posevit params data.revision=%s`, or "
            "`revision: %s` in conf/data/)",
            cfg.name,
            resolved or "(unknown)",
            resolved or "<commit>",
            resolved or "<commit>",
            resolved or "<commit>",
        )
    return {"kind": "hub", "name": cfg.name, "revision": cfg.revision, "resolved_revision": resolved}


def _is_downloaded_file(path: Path, etag: str) -> bool:
    """The hub's etag of a file is its content hash: sha256 for LFS files (the data), git's blob sha1 for the rest."""
    etag = etag.strip('"')
    if len(etag) == 64:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest() == etag
    data = path.read_bytes()
    return len(etag) == 40 and hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == etag


def downloaded_revision(root: Path, files: Iterable[Path]) -> str | None:
    """The hub commit a local copy was downloaded at (`hf download --local-dir` records commit and etag per file
    under .cache/huggingface/), when every file read has a record, still holds the bytes it names, and the
    records agree; else None."""
    try:
        from huggingface_hub._local_folder import read_download_metadata  # what `hf download` writes
    except ImportError:  # pragma: no cover - an older or newer huggingface_hub
        return None
    commits = set()
    for path in files:
        try:
            name = Path(path).resolve().relative_to(root).as_posix()
        except ValueError:
            return None
        metadata = read_download_metadata(root, name)  # None when the file is newer than the record
        if metadata is None or not _is_downloaded_file(Path(path), metadata.etag):
            return None
        commits.add(metadata.commit_hash)
    return commits.pop() if len(commits) == 1 else None


def _outside_raw(cfg: DataConfig, root: Path) -> None:
    if not root.is_relative_to(RAW_DIR.resolve()):
        _warn_once(
            "unwatched",
            cfg.name,
            "data.name=%s is outside %s/, which DVC watches: `dvc repro` will not see edits to it (its content "
            "hash is still recorded in metrics/data.json). Move or copy it under %s/ to have them rerun preprocess.",
            cfg.name,
            RAW_DIR,
            RAW_DIR,
        )


def local_identity(cfg: DataConfig, builder: datasets.DatasetBuilder) -> dict[str, Any]:
    """A local copy read by `load_dataset` (hub-format or image folder): a content hash of exactly the files the
    builder read (its data files and the dataset card), and the hub commit when it was downloaded as one."""
    root = Path(cfg.name).expanduser().resolve()
    read = {Path(str(f)) for files in (builder.config.data_files or {}).values() for f in files}
    read |= {root / name for name in CARD_FILES if (root / name).is_file()}
    _outside_raw(cfg, root)
    return {
        "kind": "local",
        "name": cfg.name,
        "content_hash": hash_files(read, root),
        "files": len(read),
        "hub_revision": downloaded_revision(root, read),
    }


def saved_identity(cfg: DataConfig) -> dict[str, Any]:
    """A `save_to_disk` directory: a content hash of all of it (every file is read)."""
    root = Path(cfg.name).expanduser().resolve()
    _outside_raw(cfg, root)
    return {"kind": "saved_to_disk", "name": cfg.name, "content_hash": hash_directory(root)}


def demo_identity(cfg: DataConfig) -> dict[str, Any]:
    """The demo is drawn from its settings (params DVC sees), byte-identical for the same ones."""
    return {"kind": "demo", "name": cfg.name, **cfg.demo.model_dump()}
