"""The HTTP server: a versioned JSON API (OpenAPI at /docs), health, Prometheus metrics, and the page at /.

    POST /v1/predict              one image (multipart field `file`) -> top-k labels and probabilities
    POST /v1/predict/batch        several `files` -> one result or one error per file, in order
    POST /api/v1/pose_classifier  the replaced system's route: {top_labels, top_probs, prediction_time}
    GET  /v1/model                the model card
    GET  /health/live, /health/ready, /metrics

Every error is JSON, `{"error": {"code", "message"}}`, with the status that fits; nothing
a client sees carries a stack trace. Request bodies are capped before they are read whole.
"""

# No `from __future__ import annotations` here: FastAPI reads these annotations at run time,
# including the route parameters that are built inside create_api.
import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import posevit
from posevit.core.errors import ConfigError, ImageError, ImageTooLarge, NotAnImage
from posevit.serve.batcher import Overloaded, TimedOut
from posevit.serve.service import Classification, InferenceService

log = logging.getLogger("posevit.serve")
T = TypeVar("T")

API_ROUTES = (
    "/v1/predict",
    "/v1/predict/batch",
    "/api/v1/pose_classifier",
    "/v1/model",
    "/health/live",
    "/health/ready",
    "/metrics",
)
MULTIPART_OVERHEAD = 64 * 1024  # headers and boundaries around the file bytes


# -- responses ---------------------------------------------------------------------------------
class ModelRef(BaseModel):
    name: str
    version: str


class LabelProbability(BaseModel):
    label: str
    probability: float


class ImageSize(BaseModel):
    width: int
    height: int


class Prediction(BaseModel):
    model: ModelRef
    predictions: list[LabelProbability]  # the top k, most probable first
    inference_ms: float  # waiting for the batch + the forward pass
    image: ImageSize


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class FileResult(BaseModel):
    filename: str | None
    result: Prediction | None = None
    error: ErrorDetail | None = None


class BatchPrediction(BaseModel):
    results: list[FileResult]  # in the order the files were sent


class PoseClassifierResponse(BaseModel):
    """The replaced system's response, unchanged for its clients."""

    top_labels: list[str]
    top_probs: list[float]
    prediction_time: float  # milliseconds


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def as_api_error(exc: Exception) -> ApiError:
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


# -- API keys ----------------------------------------------------------------------------------
class ApiKeys:
    """Keys from POSEVIT_API_KEYS (comma-separated) and/or a key file (one per line, # comments)."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [key.encode() for key in keys if key]

    @classmethod
    def load(cls, key_file: str | None, environ: dict[str, str] | None = None) -> "ApiKeys":
        environ = dict(os.environ) if environ is None else environ
        keys = [key.strip() for key in environ.get("POSEVIT_API_KEYS", "").split(",")]
        if key_file:
            path = Path(key_file)
            if not path.is_file():
                raise ConfigError(f"serve.api_keys_file = {key_file!r}: no such file (one API key per line)")
            keys += [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        return cls([key for key in keys if key])

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def valid(self, candidate: str | None) -> bool:
        """Constant-time comparison against every key (no early exit that would time the match)."""
        if candidate is None:
            return False
        given = candidate.encode()
        matches = [secrets.compare_digest(given, key) for key in self._keys]
        return any(matches)


# -- middleware --------------------------------------------------------------------------------
class GuardAndMeasure:
    """Pure ASGI: caps API request bodies before they are read whole, and counts every request.

    Streaming page traffic (Gradio's server-sent events) passes through untouched.
    """

    def __init__(self, app: ASGIApp, service: InferenceService, body_limit: Callable[[str], int | None]) -> None:
        self.app, self.metrics, self.body_limit = app, service.metrics, body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in API_ROUTES else "page"
        status = {"code": 500}
        limit = self.body_limit(path)

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
                receive = self._capped(receive, limit)
            try:
                await self.app(scope, receive, send_and_record)
            except _BodyTooLarge:
                await self._too_large(limit or 0, scope, send_and_record)
        finally:
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
                raise _BodyTooLarge
            return message

        return capped

    async def _too_large(self, limit: int, scope: Scope, send: Send) -> None:
        self.metrics.rejected.labels("body_too_large").inc()
        response = error_response(
            413,
            "too_large",
            f"the request body is over {limit / 2**20:.1f} MB (serve.max_file_mb per file, serve.max_files per batch)",
        )
        await response(scope, _no_body, send)


class _BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client hung up before its answer was ready; nobody is left to send a response to."""


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read, so only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


# -- the app -----------------------------------------------------------------------------------
def create_api(service: InferenceService, keys: ApiKeys) -> FastAPI:
    settings = service.settings
    n_labels = len(service.predictor.labels)
    limits = service.limits

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        log.info(
            "ready: %s version %s (%s, %s); batches of up to %d, %g ms wait",
            service.predictor.model_name,
            service.served.version,
            service.predictor.device,
            service.predictor.precision,
            settings.max_batch_size,
            settings.max_wait_ms,
        )
        yield
        await service.stop()

    app = FastAPI(
        title="posevit",
        version=posevit.__version__,
        lifespan=lifespan,
        description="Classify what a person in a photo is doing (15 actions). Images go in as multipart files; "
        "the server never fetches URLs. With API keys configured, send `Authorization: Bearer <key>`.",
        responses={code: {"model": ErrorBody} for code in (400, 401, 413, 415, 422, 503, 504)},
    )
    bearer = HTTPBearer(auto_error=False, description="an API key (when the server has keys configured)")

    async def require_key(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if keys.enabled and not keys.valid(credentials.credentials if credentials else None):
            raise ApiError(
                401,
                "unauthorized",
                "send a valid API key as `Authorization: Bearer <key>`",
                {"WWW-Authenticate": "Bearer"},
            )

    def body_limit(path: str) -> int | None:
        if path == "/v1/predict/batch":
            return settings.max_files * limits.max_file_bytes + MULTIPART_OVERHEAD
        if path in ("/v1/predict", "/api/v1/pose_classifier"):
            return limits.max_file_bytes + MULTIPART_OVERHEAD
        return None

    app.add_middleware(GuardAndMeasure, service=service, body_limit=body_limit)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status in (413, 503):
            service.metrics.rejected.labels(exc.code).inc()
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"] if part not in ("body", "query"))
            given = error.get("input")
            if where.startswith("file") and isinstance(given, str) and given.lower().startswith(("http:", "https:")):
                return error_response(
                    400,
                    "url_not_supported",
                    "this server never fetches URLs: download the "
                    "image and send its bytes as the multipart field `file`",
                )
            if error["type"] == "missing":
                problems.append(f"`{where}` is missing (send the image as the multipart field `{where}`)")
            else:
                problems.append(f"`{where}`: {error['msg']}")
        return error_response(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, f"http_{exc.status_code}", str(exc.detail), exc.headers)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        service.metrics.rejected.labels("client_disconnected").inc()
        return Response(status_code=499)  # nginx's "client closed request": logged, never delivered

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s", request.url.path, exc_info=exc)
        return error_response(500, "internal", "internal error; the server log has the details")

    async def classify(upload: UploadFile) -> Classification:
        try:
            if upload.size is not None:  # known from the multipart part: refuse before reading it
                service.check_size(upload.size)
            return await service.classify(await upload.read())
        except Exception as exc:
            raise as_api_error(exc) from None

    async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
        """`work`, cancelled if the client hangs up first (its image then leaves the batch queue)."""
        task = asyncio.ensure_future(work)
        watcher = asyncio.ensure_future(wait_for_disconnect(request))
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise ClientGone
        return task.result()

    def prediction(result: Classification, top_k: int) -> Prediction:
        return Prediction(
            model=ModelRef(name=service.predictor.model_name, version=service.served.version),
            predictions=[LabelProbability(label=label, probability=p) for label, p in result.top(top_k)],
            inference_ms=round(result.inference_ms, 2),
            image=ImageSize(width=result.image.width, height=result.image.height),
        )

    TopK = Annotated[int, Query(ge=1, le=n_labels, description=f"how many labels to return (1..{n_labels})")]
    keyed = [Depends(require_key)]

    @app.post("/v1/predict", response_model=Prediction, dependencies=keyed, tags=["predict"])
    async def predict(
        request: Request, file: Annotated[UploadFile, File(description="one image")], top_k: TopK = settings.top_k
    ) -> Prediction:
        """Classify one image."""
        return prediction(await unless_disconnected(request, classify(file)), top_k)

    @app.post("/v1/predict/batch", response_model=BatchPrediction, dependencies=keyed, tags=["predict"])
    async def predict_batch(
        request: Request,
        files: Annotated[list[UploadFile], File(description="images, in order")],
        top_k: TopK = settings.top_k,
    ) -> BatchPrediction:
        """Classify several images; each gets its own result or its own error, in the order sent."""
        if len(files) > settings.max_files:
            raise ApiError(
                413, "too_many_files", f"{len(files)} files; the limit is {settings.max_files} (serve.max_files)"
            )
        outcomes = await unless_disconnected(
            request, asyncio.gather(*(classify(file) for file in files), return_exceptions=True)
        )
        results = []
        for file, outcome in zip(files, outcomes, strict=True):
            if isinstance(outcome, Classification):
                results.append(FileResult(filename=file.filename, result=prediction(outcome, top_k)))
            else:
                error = as_api_error(outcome) if isinstance(outcome, Exception) else ApiError(500, "internal", "")
                results.append(
                    FileResult(filename=file.filename, error=ErrorDetail(code=error.code, message=error.message))
                )
        return BatchPrediction(results=results)

    @app.post(
        "/api/v1/pose_classifier", response_model=PoseClassifierResponse, dependencies=keyed, tags=["compatibility"]
    )
    async def pose_classifier(
        request: Request, file: Annotated[UploadFile, File(description="one image")], top_k: TopK = 3
    ) -> PoseClassifierResponse:
        """The replaced system's route, for its existing clients (top 3 by default, time in ms)."""
        result = await unless_disconnected(request, classify(file))
        top = result.top(top_k)
        return PoseClassifierResponse(
            top_labels=[label for label, _ in top],
            top_probs=[p for _, p in top],
            prediction_time=round(result.inference_ms, 2),
        )

    @app.get("/v1/model", dependencies=keyed, tags=["model"])
    async def model() -> dict[str, Any]:
        """The model card: name, version, source, labels, test metrics, data config, batching."""
        return service.model_card()

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "alive"}

    @app.get("/health/ready", tags=["health"], responses={503: {"model": ErrorBody}})
    async def ready() -> Response:
        """The model is loaded and warmed up: send traffic."""
        if service.ready:
            return JSONResponse(
                {"status": "ready", "model": service.predictor.model_name, "version": service.served.version}
            )
        return error_response(503, "not_ready", "the model is still loading", {"Retry-After": "2"})

    metrics_guard = keyed if settings.metrics_require_key else []

    @app.get("/metrics", dependencies=metrics_guard, tags=["health"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics: requests by route and status, latency, batch sizes, queue depth."""
        service.metrics.queue_depth.set(service.batcher.queue_depth)
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
