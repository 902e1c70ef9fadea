"""Preprocess records what it read: the commit a hub dataset resolved to (warning once, with the line that pins
it, when unpinned), a content hash of the files of a local copy; and an edit to a local copy reruns it in DVC."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import datasets
import pytest
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData
from huggingface_hub._local_folder import write_download_metadata

from posevit.core.config import DataConfig
from posevit.core.errors import DataError
from posevit.core.hashing import hash_files
from posevit.data.prepare import prepare_data
from posevit.data.sources import load_source
from posevit.data.summary import summarise
from tests.helpers.dvc_project import preprocessed_smoke_project
from tests.helpers.images import action_dataset, balanced_labels

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def write_hub_copy(root: Path, splits: dict[str, datasets.Dataset], commit: str | None = None) -> list[Path]:
    """A local copy of a hub dataset repo as `hf download --local-dir` leaves it: parquet shards under data/, a
    README.md whose dataset card declares the splits and features (as `push_to_hub` writes it), and with `commit`
    the download's per-file records; returns the files datasets reads."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    files = []
    for name, split in splits.items():
        files.append(root / "data" / f"{name}-00000-of-00001.parquet")
        split.to_parquet(str(files[-1]))
    card = DatasetCardData()
    layout = {"default": {"data_files": [{"split": name, "path": f"data/{name}-*"} for name in splits]}}
    MetadataConfigs(layout).to_dataset_card_data(card)
    DatasetInfosDict({"default": DatasetInfo(features=next(iter(splits.values())).features)}).to_dataset_card_data(card)
    DatasetCard(f"---\n{card.to_yaml()}\n---\n# Tiny actions\n").save(root / "README.md")
    files.append(root / "README.md")
    (root / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")  # not read: not hashed
    for path in files if commit else []:
        write_download_metadata(root, path.relative_to(root).as_posix(), commit, etag=_hub_etag(path))
    return files


def _hub_etag(path: Path) -> str:
    """The hub's etag: sha256 of an LFS file (the parquet shards), git's blob sha1 of the others."""
    data = path.read_bytes()
    if path.suffix == ".parquet":
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _splits(seed: int = 0) -> dict[str, datasets.Dataset]:
    return {"train": action_dataset(balanced_labels(4), seed=seed), "test": action_dataset(balanced_labels(2), seed=9)}


def test_a_local_hub_format_copy_records_the_hash_of_the_files_it_read_and_the_commit_it_came_from(tmp_path, caplog):
    copy = tmp_path / "tiny_actions"
    files = write_hub_copy(copy, _splits(), commit=COMMIT)
    cfg = DataConfig(name=str(copy), test_size=0.25, validation_size=0.25, num_proc=1)
    with caplog.at_level(logging.WARNING):
        prepared = prepare_data(cfg)
        load_source(cfg)
    identity = prepared.identity
    assert identity == {
        "kind": "local",
        "name": str(copy),
        "content_hash": hash_files(files, copy),
        "files": 3,  # two shards and the card, not .gitattributes nor the download records
        "hub_revision": COMMIT,
    }
    assert summarise(prepared, cfg.name)["identity"] == identity
    outside = [r for r in caplog.records if "outside data/raw" in r.getMessage()]
    assert len(outside) == 1, caplog.text  # once, though loaded twice
    assert "no data.revision" not in caplog.text  # a local copy has nothing to pin

    (copy / "notes.txt").write_text("a file the loader does not read")
    assert load_source(cfg).identity == identity
    _splits(seed=1)["train"].to_parquet(str(files[0]))  # other images in the train shard (within the second)
    changed = load_source(cfg).identity
    assert changed["content_hash"] != identity["content_hash"]
    assert changed["hub_revision"] is None  # its bytes are not the downloaded ones: no longer that commit


def _cache_as_a_hub_load(copy: Path, repo_id: str, commit: str, cache: Path) -> None:
    """What `load_dataset(repo_id)` at `commit` leaves in datasets' cache: the same parquet builder's arrow files in
    <namespace>___<name>/<config>/<version>/<commit> (offline, datasets reads that cache and reports the commit as
    the builder's hash). The namespace is added by hand: a builder given a repo id insists on hf:// data files."""
    namespace, name = repo_id.split("/")
    local = datasets.load_dataset_builder(str(copy))
    builder = type(local)(
        cache_dir=str(cache),
        dataset_name=name,
        config_name=local.config.name,  # the card's config, data files and features, as in a hub load
        hash=commit,
        info=local.info,
    )
    builder.download_and_prepare()
    (cache / name).rename(cache / f"{namespace}___{name}")


def test_a_hub_dataset_records_the_commit_datasets_resolved_and_an_unpinned_one_warns_once(
    tmp_path, monkeypatch, caplog
):
    repo_id = "posevit-tests/tiny_actions"
    write_hub_copy(tmp_path / "copy", _splits())
    cache = tmp_path / "datasets-cache"
    _cache_as_a_hub_load(tmp_path / "copy", repo_id, COMMIT, cache)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    assert datasets.config.HF_HUB_OFFLINE  # the hub is unreachable in tests (conftest): the cached commit

    with caplog.at_level(logging.WARNING):
        first = load_source(DataConfig(name=repo_id, num_proc=1))
        again = load_source(DataConfig(name=repo_id, num_proc=1))
    assert (
        first.identity
        == again.identity
        == {
            "kind": "hub",
            "name": repo_id,
            "revision": None,
            "resolved_revision": COMMIT,
        }
    )
    assert first.splits["train"].num_rows == 60
    pins = [r.getMessage() for r in caplog.records if "no data.revision" in r.getMessage()]
    assert len(pins) == 1, caplog.text
    assert f"-S data.revision={COMMIT}" in pins[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        pinned = load_source(DataConfig(name=repo_id, revision=COMMIT, num_proc=1))
    assert pinned.identity["resolved_revision"] == COMMIT and "no data.revision" not in caplog.text
    with pytest.raises(DataError, match=f"data.revision={'f' * 40} but datasets loaded {repo_id} at commit {COMMIT}"):
        load_source(DataConfig(name=repo_id, revision="f" * 40, num_proc=1))


@pytest.mark.slow
def test_an_edit_to_a_local_copy_under_data_raw_reruns_preprocess_and_changes_the_recorded_hash(tmp_path_factory):
    project = preprocessed_smoke_project(tmp_path_factory, tmp_path_factory.mktemp("identity") / "posevit")
    copy = project.root / "data/raw/tiny_actions"
    files = write_hub_copy(copy, {"train": action_dataset(balanced_labels(10))})
    project.run(sys.executable, "-m", "posevit.core.config", "experiment=smoke", "data.name=data/raw/tiny_actions")
    status = json.loads(project.dvc("status", "--json").stdout)
    assert "data/raw" in json.dumps(status["preprocess"]), status  # the new copy is a changed dep already

    ran = project.dvc("repro", "preprocess")
    assert "Running stage 'preprocess'" in ran.stdout and "outside data/raw" not in ran.stderr, ran.stderr
    recorded = json.loads((project.root / "metrics/data.json").read_text())["identity"]
    assert recorded["kind"] == "local" and recorded["content_hash"] == hash_files(files, copy)
    assert "up to date" in project.dvc("status", "preprocess").stdout

    action_dataset(balanced_labels(10), seed=5).to_parquet(str(files[0]))  # the copy changes
    status = json.loads(project.dvc("status", "--json").stdout)
    assert "data/raw" in json.dumps(status["preprocess"]), status
    assert "Running stage 'preprocess'" in project.dvc("repro", "preprocess").stdout
    rerun = json.loads((project.root / "metrics/data.json").read_text())["identity"]
    assert rerun["content_hash"] == hash_files(files, copy) != recorded["content_hash"]
