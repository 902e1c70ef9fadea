"""The HTTP server: a versioned JSON API (OpenAPI at /docs), health, Prometheus metrics, and the page at /.

    POST /v1/predict              one image (multipart field `file`) -> top-k labels and probabilities
    POST /v1/predict/batch        several `files` -> one result or one error per file, in order
    POST /api/v1/pose_classifier  the replaced system's route: {top_labels, top_probs, prediction_time}
    GET  /v1/model                the model card
    GET  /health/live, /health/ready, /metrics

A package, one router per concern (`routes_predict`, `routes_model`, `routes_health`,
`routes_metrics`), each path written once in its route's decorator; the routes get the
`InferenceService` and the `ApiKeys` from `app.state` through `Depends` (`deps`). Every error is
JSON, `{"error": {"code", "message"}}`, with the status that fits (`errors`); nothing a client
sees carries a stack trace. Request bodies are capped before they are read whole (`guard`). The
docs' Swagger UI and ReDoc assets are served from the installed `fastapi-offline` package, so
/docs works with no internet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

import posevit
from posevit.serve.api import routes_health, routes_metrics, routes_model, routes_predict
from posevit.serve.api.errors import install_error_handlers
from posevit.serve.api.guard import ApiRoutes, GuardAndMeasure
from posevit.serve.api.keys import ApiKeys
from posevit.serve.api.schemas import ErrorBody
from posevit.serve.prediction_log import PredictionLog
from posevit.serve.service import InferenceService

__all__ = ["ROUTERS", "ApiKeys", "api_routes", "create_api"]

log = logging.getLogger("posevit.serve")
ROUTERS: tuple[APIRouter, ...] = (
    routes_predict.router,
    routes_model.router,
    routes_health.router,
    routes_metrics.router,
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: InferenceService = app.state.service
    prediction_log: PredictionLog = app.state.prediction_log
    await service.start()
    prediction_log.start()
    log.info(
        "ready: %s version %s (%s, %s); batches of up to %d (%s), %d stream(s) (%s), %g ms wait",
        service.predictor.model_name,
        service.served.version,
        service.predictor.device,
        service.predictor.precision,
        service.batcher.batch_limit,
        "measured" if service.settings.batch_limit == "auto" else "serve.batch_limit",
        service.batcher.streams,
        service.model.batching.streams_chosen_by if service.model.batching else "backend",
        service.settings.max_wait_ms,
    )
    yield
    await service.stop()
    await asyncio.to_thread(prediction_log.close)  # after the last answer, so its row is in the last file


def api_routes(service: InferenceService) -> ApiRoutes:
    """The routers' routes, with the body cap each upload route's parameters imply under these settings."""
    routes = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
    return ApiRoutes.of(routes, service.limits.max_file_bytes, service.settings.max_files)


def create_api(service: InferenceService, keys: ApiKeys) -> FastAPI:
    app = FastAPIOffline(
        title="posevit",
        version=posevit.__version__,
        lifespan=lifespan,
        description="Classify what a person in a photo is doing (15 actions). Images go in as multipart files; "
        "the server never fetches URLs. With API keys configured, send `Authorization: Bearer <key>`.",
        responses={code: {"model": ErrorBody} for code in (400, 401, 413, 415, 422, 503, 504)},
    )
    app.state.service, app.state.keys = service, keys
    app.state.prediction_log = PredictionLog(service.settings, service.metrics)
    for router in ROUTERS:
        app.include_router(router)
    install_error_handlers(app)
    app.add_middleware(GuardAndMeasure, metrics=service.metrics, routes=api_routes(service))
    return app
