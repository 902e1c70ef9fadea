"""Follow the model's alias while serving (`posevit serve --model s3://B/P/NAME:production --follow 30`).

Every `serve.follow` seconds the follower reads the alias with a conditional GET (S3 answers 304, no body, while
it has not moved). When it names another version than the one serving, that version is fetched and verified
against its manifest, loaded on the same backend and device, and warmed up (its batch limit timed anew when
`serve.batch_limit` is auto: another model may batch differently), all off the event loop and beside
the serving model; then `InferenceService.swap` serves it to every request that arrives from then on. Requests
already in flight finish on the version they started with (each answer names its version); once none is left,
the old model is released, so memory holds at most two models and only while swapping.

A version that fails to fetch, verify, load or warm up is not swapped in: the old one serves on, the failure is
counted (`posevit_model_update_failures{stage}`) and shown in the model card (`/v1/model`, `follow.last_error`),
and the next poll tries again. So a fleet of servers following one alias converges within one poll interval
(plus a load) of a promotion, and a broken version never takes a server down.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from posevit.core.config import ServeConfig
from posevit.core.errors import ConfigError, PosevitError
from posevit.infer.loading import fetch_version, load_served
from posevit.publish.s3 import make_client
from posevit.serve.batch_limit import SWAP_BUDGET_S
from posevit.serve.pointer import Pointer, pointer_of, read_pointer
from posevit.serve.service import InferenceService, LoadedModel, warm_up

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger("posevit.serve")


def followed_pointer(settings: ServeConfig) -> Pointer:
    """The alias serve.follow polls; a ConfigError when serve.model names none."""
    pointer = pointer_of(settings.model)
    if pointer is None:
        raise ConfigError(
            f"serve.follow = {settings.follow:g} follows a registry alias, and serve.model = {settings.model!r} "
            "names none: name the model s3://BUCKET/PREFIX/NAME:ALIAS or registry:ALIAS (e.g. :production, "
            ":latest), or leave serve.follow unset to serve one version"
        )
    return pointer


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ModelFollower:
    def __init__(self, service: InferenceService, pointer: Pointer, client: S3Client | None = None) -> None:
        self.service, self.pointer = service, pointer
        self.client = client or make_client(pointer.endpoint_url, pointer.region)
        self.etag: str | None = None  # of the alias object as last read: the next read is conditional on it
        self.target = service.served.version  # the version the alias names, as last read
        self.target_seen_at: str | None = None  # when a poll first read that the alias names it
        self.polled_at: str | None = None
        self.last_swap: dict[str, Any] | None = None
        self.last_error: dict[str, Any] | None = None
        self._lock = asyncio.Lock()  # one poll at a time, so at most one new model loads beside the served one
        self._task: asyncio.Task[None] | None = None

    def start(self, interval_s: float) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow(interval_s), name="posevit-follow")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _follow(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self.poll()

    async def poll(self) -> str:
        """One step: read the alias, and if it names another version than the one serving, swap that one in.
        Returns what happened: "unchanged", "swapped" or "failed" (never raises: the server serves on)."""
        async with self._lock:
            try:
                record, self.etag = await asyncio.to_thread(read_pointer, self.client, self.pointer, self.etag)
            except Exception as exc:  # S3 down, a bad record: the next poll tries again
                return self._failed("poll", self.target, exc)
            self.polled_at = _now()
            if record is not None and record["version"] != self.target:
                self.target, self.target_seen_at = record["version"], self.polled_at
            if self.target == self.service.served.version:
                return "unchanged"
            return await self._swap_in(self.target)

    async def _swap_in(self, version: str) -> str:
        settings = self.service.settings
        pointer = self.pointer
        stage = "fetch"  # and verify: fetch_version returns only files that match the manifest
        try:
            served = await asyncio.to_thread(
                fetch_version, pointer.address, version, settings, pointer.endpoint_url, pointer.region
            )
            stage = "load"
            predictor = await asyncio.to_thread(load_served, served, settings)
            stage = "warm"  # and time: the batch limit is re-chosen for the new model
            batching = await asyncio.to_thread(warm_up, predictor, settings, SWAP_BUDGET_S)
        except Exception as exc:  # whatever a broken version raises, the served one stays
            return self._failed(stage, version, exc)
        old = self.service.swap(LoadedModel(predictor, served, batching, settings.fast_decode))
        del predictor
        self.service.metrics.model_swaps.inc()
        self.last_swap = {"from": old.version, "to": version, "seen_at": self.target_seen_at, "at": _now()}
        log.info("alias %s moved: now serving version %s (was %s)", pointer.alias, version, old.version)
        await old.drained()  # the requests that started on it are answered
        del old
        gc.collect()  # its memory goes back before the next poll may load another
        return "swapped"

    def _failed(self, stage: str, version: str, exc: BaseException) -> str:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.service.metrics.model_update_failures.labels(stage).inc()
        self.last_error = {"stage": stage, "version": version, "message": message, "at": _now()}
        log.warning(
            "version %s of alias %s not swapped in (%s failed: %s); version %s serves on, the next poll tries again",
            version,
            self.pointer.alias,
            stage,
            message,
            self.service.served.version,
            exc_info=not isinstance(exc, PosevitError),
        )
        return "failed"

    def card(self) -> dict[str, Any]:
        """The model card's `follow` section."""
        return {
            "alias": self.pointer.alias,
            "pointer": self.pointer.uri,
            "interval_s": self.service.settings.follow,
            "target": self.target,
            "polled_at": self.polled_at,
            "last_swap": self.last_swap,
            "last_error": self.last_error,
        }
