"""Every error the API answers is JSON, `{"error": {"code", "message"}}`, with the status that fits.

Nothing a client sees carries a stack trace; the unexpected ones are logged in full instead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from posevit.core.errors import ImageError, ImageTooLarge, NotAnImage
from posevit.serve.batcher import Overloaded, TimedOut
from posevit.serve.telemetry import ServeMetrics

log = logging.getLogger("posevit.serve")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class BodyTooLarge(HTTPException):
    """A request body past its route's cap. An HTTPException, so that FastAPI passes it on as it is when it
    is raised while the body streams in (it turns any other error there into a 400)."""

    code = "too_large"

    def __init__(self, limit: int) -> None:
        message = (
            f"the request body is over {limit / 2**20:.1f} MB (serve.max_file_mb per file, serve.max_files per batch)"
        )
        super().__init__(413, message)


class ClientGone(Exception):
    """The client hung up before its answer was ready; nobody is left to send a response to."""


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def as_api_error(exc: BaseException) -> ApiError:
    """The HTTP status and code of what went wrong with one image."""
    if isinstance(exc, ImageTooLarge):
        return ApiError(413, "too_large", str(exc))
    if isinstance(exc, NotAnImage):
        return ApiError(415, "not_an_image", str(exc))
    if isinstance(exc, ImageError):
        return ApiError(400, "bad_image", str(exc))
    if isinstance(exc, Overloaded):
        return ApiError(503, "overloaded", str(exc), {"Retry-After": "1"})
    if isinstance(exc, TimedOut):
        return ApiError(504, "timeout", str(exc))
    if isinstance(exc, ApiError):
        return exc
    log.error("unexpected error while classifying", exc_info=exc)
    return ApiError(500, "internal", "internal error; the server log has the details")


def _metrics(request: Request) -> ServeMetrics:
    metrics: ServeMetrics = request.app.state.service.metrics
    return metrics


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.status in (413, 503):
        _metrics(request).rejected.labels(exc.code).inc()
    return error_response(exc.status, exc.code, exc.message, exc.headers)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part not in ("body", "query"))
        given = error.get("input")
        if where.startswith("file") and isinstance(given, str) and given.lower().startswith(("http:", "https:")):
            return error_response(
                400,
                "url_not_supported",
                "this server never fetches URLs: download the image and send its bytes as the multipart field `file`",
            )
        if error["type"] == "missing":
            problems.append(f"`{where}` is missing (send the image as the multipart field `{where}`)")
        else:
            problems.append(f"`{where}`: {error['msg']}")
    return error_response(422, "invalid_request", "; ".join(problems))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, BodyTooLarge):
        _metrics(request).rejected.labels("body_too_large").inc()
        return error_response(exc.status_code, exc.code, exc.detail)
    return error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail), exc.headers)


async def _client_gone(request: Request, exc: Exception) -> Response:
    _metrics(request).rejected.labels("client_disconnected").inc()
    return Response(status_code=499)  # nginx's "client closed request": logged, never delivered


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(ClientGone, _client_gone)
    app.add_exception_handler(Exception, _unexpected)
