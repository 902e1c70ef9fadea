"""Where a served model comes from: the S3 registry, a DVC revision, or a bundle folder on disk.

    s3://BUCKET/PREFIX/NAME:latest    the latest version published there; endpoint, region and credentials
    s3://BUCKET/PREFIX/NAME:ALIAS     come from the AWS chain (AWS_ENDPOINT_URL_S3, AWS_REGION, AWS_PROFILE...);
    s3://BUCKET/PREFIX/NAME@VERSION   an alias (production, staging) resolves to the version it points at now
    registry[:VERSION|:ALIAS]         the same at the project's push.* (params.yaml in the working directory)
    dvc:REV                           models/ (and exports/) as committed at a git revision (DVC remote or cache)
    FOLDER                            a local bundle, e.g. models/ after `dvc repro`
    auto                              registry inside a project (else its models/), models/ outside one

Each fetches only the files its backend runs (`infer.backends.BACKEND_FILES`), into `core.paths.cache_root()`.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from posevit.core.config import Backend
from posevit.core.errors import PosevitError
from posevit.core.evaluation_record import TestMetrics
from posevit.core.hashing import hash_directory
from posevit.core.paths import EXPORTS_DIR, MODELS_DIR, PARAMS_FILE, TEST_METRICS, cache_root
from posevit.infer.backends import BACKEND_FILES
from posevit.infer.served import ServedModel
from posevit.models.bundle_config import CONFIG_FILE, read_bundle_config
from posevit.publish.location import URI_FORMS, ModelAddress, ModelSourceError, parse_s3_uri, project_registry

__all__ = ["ModelSourceError", "ServedModel", "from_folder", "parse_s3_uri", "project_registry", "resolve"]

HOW_TO_GET_ONE = (
    "get a model first, one of: `make demo` (trains and publishes to the local S3), "
    "`dvc pull models` (from the DVC remote), or pass --model <bundle folder> / "
    f"{URI_FORMS} / registry[:version|:alias] (in the project) / dvc:<rev>"
)

log = logging.getLogger("posevit.app")


def _metrics(path: Path) -> TestMetrics | None:
    if not path.is_file():
        return None
    metrics: TestMetrics = json.loads(path.read_text())
    return metrics


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


def from_registry(
    address: ModelAddress,
    version: str,
    backend: Backend,
    endpoint_url: str | None = None,
    region: str | None = None,
) -> ServedModel:
    """A published version (or `latest`, or an alias's) with the files `backend` runs, each verified against the
    manifest."""
    from posevit.publish.aliases import resolve_name
    from posevit.publish.registry import NotPublished, fetch_model
    from posevit.publish.s3 import make_client

    client = make_client(endpoint_url, region)
    version, pointer = resolve_name(client, address, version)
    if pointer is not None:
        log.info("%s points to version %s", address.uri(pointer), version)
    try:
        folder = fetch_model(
            client,
            address,
            version,
            cache_root() / "registry",
            files=[path.as_posix() for path in BACKEND_FILES[backend]],
            optional=[TEST_METRICS.as_posix()],
        )
    except NotPublished as exc:
        raise ModelSourceError(
            f"backend {backend} runs {', '.join(exc.names)}, and {exc}: use backend torch, or serve a version "
            "whose push published its exports (`dvc repro export push`)"
        ) from None
    return from_folder(
        folder / MODELS_DIR.name, f"S3 registry {address.uri(folder.name)}/", folder / TEST_METRICS, folder.name
    )


def from_dvc(rev: str, backend: Backend) -> ServedModel:
    """The bundle, the file `backend` runs and metrics/test.json as of git revision `rev`, through DVC (cache or
    remote). Only those: a revision whose exports/ never reached a cache or remote still serves with backend torch."""
    try:
        from dvc.api import DVCFileSystem
    except ModuleNotFoundError:  # the serving install (posevit[serve]) has no DVC
        raise ModelSourceError(
            f"dvc:{rev} needs DVC, which this install lacks (posevit[serve]): install posevit[pipeline], "
            f"or name the model by URI, {URI_FORMS}"
        ) from None
    target = cache_root() / "dvc" / rev.replace("/", "_")
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        fs = DVCFileSystem(".", rev=rev)
        fs.isdir(MODELS_DIR.as_posix())  # a bad revision, or no DVC project, shows here
    except Exception as exc:  # DVC raises many kinds: bad rev, not a DVC repo
        raise ModelSourceError(f"cannot get models/ at revision {rev!r} through DVC: {exc}. {HOW_TO_GET_ONE}") from None
    # The whole bundle as well: its bytes are its version (a registry fetch has the manifest to say it).
    for path in dict.fromkeys([*BACKEND_FILES["torch"], *BACKEND_FILES[backend]]):
        (partial / path).parent.mkdir(parents=True, exist_ok=True)
        try:
            fs.get(path.as_posix(), str(partial / path))
        except Exception as exc:  # not committed there, or its data in no cache and no remote
            shutil.rmtree(partial, ignore_errors=True)
            hint = HOW_TO_GET_ONE if path.parent == MODELS_DIR else "use backend torch, or `dvc repro export` there"
            raise ModelSourceError(
                f"cannot get {path} at revision {rev!r} through DVC (backend {backend} runs it): {exc}. "
                f"Its data must be in the DVC cache or remote (`dvc push` after the run that made it); {hint}"
            ) from None
    try:
        fs.get(TEST_METRICS.as_posix(), str(partial / TEST_METRICS))
    except Exception:  # metrics are for the model card only
        log.info("no %s at revision %s", TEST_METRICS, rev)
    shutil.rmtree(target, ignore_errors=True)
    partial.replace(target)
    return from_folder(target / MODELS_DIR.name, f"DVC revision {rev}", target / TEST_METRICS)


def _from_project_registry(version: str, backend: Backend) -> ServedModel:
    address, endpoint_url, region = project_registry()
    return from_registry(address, version, backend, endpoint_url, region)


def _auto(backend: Backend) -> ServedModel:
    """Inside a project: its registry's latest, else its models/; outside one: models/ if there is one."""
    local = (MODELS_DIR / CONFIG_FILE).is_file()
    if not PARAMS_FILE.is_file():
        if local:
            return from_folder(MODELS_DIR)
        raise ModelSourceError(
            f"no model to serve: this directory is no posevit project (no {PARAMS_FILE}, no {MODELS_DIR}/): "
            f"name one with --model {URI_FORMS} or a bundle folder; in the project, {HOW_TO_GET_ONE}"
        )
    try:
        return _from_project_registry("latest", backend)
    except PosevitError as registry_error:
        if local:
            log.warning("registry unavailable (%s); serving the local bundle %s/", registry_error, MODELS_DIR)
            return from_folder(MODELS_DIR)
        raise ModelSourceError(
            f"no model to serve: the S3 registry said: {registry_error}\n"
            f"and there is no local bundle in {MODELS_DIR}/. {HOW_TO_GET_ONE}"
        ) from None


def resolve(spec: str, backend: Backend) -> ServedModel:
    """The model named by `spec` (see the module docstring), with the files `backend` runs."""
    if spec == "auto":
        return _auto(backend)
    if spec.startswith("s3://"):
        address, version = parse_s3_uri(spec)
        return from_registry(address, version, backend)
    if spec == "registry" or spec.startswith("registry:"):
        return _from_project_registry(spec.partition(":")[2] or "latest", backend)
    if spec.startswith("dvc:"):
        return from_dvc(spec.removeprefix("dvc:"), backend)
    return from_folder(Path(spec))
