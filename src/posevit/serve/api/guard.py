"""Pure ASGI middleware: caps upload bodies before they are read whole, and counts every request.

What it guards and how it labels follow from the routes themselves (`ApiRoutes.of`): an upload
route's cap is what its file parameters can carry, and the metrics label of a request is its
route's path (everything else, the page and the docs, counts as "page"). Streaming page traffic
(Gradio's server-sent events) passes through untouched.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import get_origin

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posevit.serve.api.errors import BodyTooLarge, error_response
from posevit.serve.telemetry import ServeMetrics

MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the file bytes
PAGE = "page"  # the metrics label of everything that is not an API route


@dataclass(frozen=True)
class ApiRoutes:
    labels: frozenset[str]  # the API's paths, each its own metrics label
    body_limits: dict[str, int]  # upload path -> the most bytes its body may have

    @classmethod
    def of(cls, routes: Iterable[APIRoute], max_file_bytes: int, max_files: int) -> ApiRoutes:
        routes = list(routes)
        limits = {}
        for route in routes:
            files = files_per_request(route, max_files)
            if files:
                limits[route.path] = files * max_file_bytes + MULTIPART_OVERHEAD
        return cls(frozenset(route.path for route in routes), limits)

    def label(self, path: str) -> str:
        return path if path in self.labels else PAGE


def files_per_request(route: APIRoute, max_files: int) -> int:
    """How many files the route's body can carry: one per file parameter, `max_files` per list of them."""
    return sum(
        max_files if get_origin(field.field_info.annotation) is list else 1 for field in route.dependant.body_params
    )


class GuardAndMeasure:
    def __init__(self, app: ASGIApp, metrics: ServeMetrics, routes: ApiRoutes) -> None:
        self.app, self.metrics, self.routes = app, metrics, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        status = {"code": 500}
        limit = self.routes.body_limits.get(path)

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            if limit is not None and scope["method"] != "POST":
                # Said here: past this point the page's catch-all mount would answer 404 for the path.
                response = error_response(405, "http_405", f"{path} takes POST (a multipart upload)", {"Allow": "POST"})
                await response(scope, _no_body, send_and_record)
                return
            if limit is not None:
                declared = dict(scope["headers"]).get(b"content-length")
                if declared is None or not declared.isdigit():  # chunked: the size is unknown until read
                    response = error_response(
                        411,
                        "length_required",
                        "send the upload with a Content-Length header (curl, httpx and requests do for files)",
                    )
                    await response(scope, _no_body, send_and_record)
                    return
                if int(declared) > limit:
                    await self._too_large(limit, scope, send_and_record)
                    return
                receive = self._capped(receive, limit)  # a body longer than declared: the app answers 413
            await self.app(scope, receive, send_and_record)
        finally:
            route = self.routes.label(path)
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, str(status["code"])).inc()

    @staticmethod
    def _capped(receive: Receive, limit: int) -> Receive:
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
            return message

        return capped

    async def _too_large(self, limit: int, scope: Scope, send: Send) -> None:
        self.metrics.rejected.labels("body_too_large").inc()
        refusal = BodyTooLarge(limit)
        await error_response(refusal.status_code, refusal.code, refusal.detail)(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
