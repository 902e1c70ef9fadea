"""Where a served model comes from: the S3 registry, a DVC revision, or a bundle folder on disk.

registry            latest published version (push.* in params.yaml says where)
registry:<version>  one pinned version
dvc:<rev>           models/ and metrics/test.json as committed at a git revision (DVC remote or cache)
<folder>            a local bundle, e.g. models/ after `dvc repro`
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from posevit.core.config import Backend
from posevit.core.errors import PosevitError
from posevit.core.evaluation_record import TestMetrics
from posevit.core.hashing import hash_directory
from posevit.core.paths import EXPORTS_DIR, MODELS_DIR, ONNX_BY_BACKEND, TEST_METRICS
from posevit.models.bundle_config import CONFIG_FILE, WEIGHTS_FILE, read_bundle_config

HOW_TO_GET_ONE = (
    "get a model first, one of: `make demo` (trains and publishes to the local S3), "
    "`dvc pull models` (from the DVC remote), or pass --model <bundle folder> / registry[:version] / dvc:<rev>"
)

log = logging.getLogger("posevit.app")
CACHE_DIR = Path(os.environ.get("POSEVIT_CACHE", Path.home() / ".cache" / "posevit"))  # fetched models, examples


class ModelSourceError(PosevitError):
    """No model could be found where the app was told to look."""


@dataclass(frozen=True)
class ServedModel:
    bundle_dir: Path
    version: str  # content hash of the bundle, as in the registry and the report
    source: str  # where it came from, for the model card
    metrics: TestMetrics | None  # test metrics that came with it, if any
    exports_dir: Path | None = None  # its ONNX exports, when they came with it


def _metrics(path: Path) -> TestMetrics | None:
    if not path.is_file():
        return None
    metrics: TestMetrics = json.loads(path.read_text())
    return metrics


def registry_skip(backend: Backend) -> tuple[str, ...]:
    """What a registry fetch for `backend` leaves in S3: torch needs no exports, an ONNX backend
    neither the weights nor the other ONNX file (ViT-B/16: ~90 MB to fetch for int8 instead of ~770)."""
    if backend == "torch":
        return (f"{EXPORTS_DIR.name}/",)
    others = [path.as_posix() for name, path in ONNX_BY_BACKEND.items() if name != backend]
    return (f"{MODELS_DIR.name}/{WEIGHTS_FILE}", *others)


def from_folder(
    folder: Path, source: str | None = None, metrics_file: Path | None = None, version: str | None = None
) -> ServedModel:
    """`version`: the registry's name for it, when the folder holds config.json without the weights."""
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise ModelSourceError(f"{folder} holds no model bundle ({CONFIG_FILE} missing): {HOW_TO_GET_ONE}")
    read_bundle_config(folder)
    if metrics_file is None:  # a project's models/ sits next to its metrics/
        metrics_file = folder.parent / TEST_METRICS
    exports = folder.parent / EXPORTS_DIR  # a project's, or a registry version's, exports/ beside models/
    return ServedModel(
        folder,
        version or hash_directory(folder),
        source or f"local folder {folder}",
        _metrics(metrics_file),
        exports if exports.is_dir() else None,
    )


def from_registry(version: str, cache_dir: Path | None = None, skip: tuple[str, ...] = ()) -> ServedModel:
    """A published version, verified; files under the `skip` prefixes stay in S3 (`registry_skip`)."""
    from posevit.core.config import load_params
    from posevit.publish.registry import DEFAULT_CACHE, ModelAddress, fetch_model
    from posevit.publish.s3 import make_client

    push = load_params().push
    address = ModelAddress(push.bucket, push.prefix, push.model_name)
    folder = fetch_model(
        make_client(push.endpoint_url, push.region),
        address,
        version or "latest",
        cache_dir or DEFAULT_CACHE,
        skip=skip,
    )
    return from_folder(
        folder / MODELS_DIR.name, f"S3 registry {address.uri(folder.name)}/", folder / TEST_METRICS, folder.name
    )


def from_dvc(rev: str, cache_dir: Path) -> ServedModel:
    """models/ and metrics/test.json as of git revision `rev`, through DVC (cache or remote)."""
    from dvc.api import DVCFileSystem

    target = Path(cache_dir) / "dvc" / rev.replace("/", "_")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        fs = DVCFileSystem(".", rev=rev)
        fs.get(MODELS_DIR.as_posix(), str(partial / MODELS_DIR.name), recursive=True)
        if fs.exists(TEST_METRICS.as_posix()):
            fs.get(TEST_METRICS.as_posix(), str(partial / TEST_METRICS))
        if fs.exists(EXPORTS_DIR.as_posix()):
            fs.get(EXPORTS_DIR.as_posix(), str(partial / EXPORTS_DIR.name), recursive=True)
    except Exception as exc:  # DVC raises many kinds: bad rev, no remote, missing cache
        shutil.rmtree(partial, ignore_errors=True)
        raise ModelSourceError(f"cannot get models/ at revision {rev!r} through DVC: {exc}. {HOW_TO_GET_ONE}") from None
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)
    return from_folder(target / MODELS_DIR.name, f"DVC revision {rev}", target / TEST_METRICS)


def resolve(spec: str, cache_dir: Path, skip: tuple[str, ...] = ()) -> ServedModel:
    """The model named by `spec` (see the module docstring); `auto`: the registry's latest, else models/.
    A registry version comes without the files under the `skip` prefixes (`registry_skip(backend)`)."""
    if spec == "auto":
        try:
            return from_registry("latest", cache_dir / "registry", skip)
        except PosevitError as registry_error:
            if (MODELS_DIR / CONFIG_FILE).is_file():
                log.warning("registry unavailable (%s); serving the local bundle %s/", registry_error, MODELS_DIR)
                return from_folder(MODELS_DIR)
            raise ModelSourceError(
                f"no model to serve: the S3 registry said: {registry_error}\n"
                f"and there is no local bundle in {MODELS_DIR}/. {HOW_TO_GET_ONE}"
            ) from None
    if spec == "registry" or spec.startswith("registry:"):
        return from_registry(spec.partition(":")[2] or "latest", cache_dir / "registry", skip)
    if spec.startswith("dvc:"):
        return from_dvc(spec.removeprefix("dvc:"), cache_dir)
    return from_folder(Path(spec))
