"""The Prometheus scrape route (the metrics themselves are `posevit.serve.telemetry`)."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from posevit.serve.api.deps import Service, require_key_for_metrics

router = APIRouter(tags=["health"])


@router.get("/metrics", dependencies=[Depends(require_key_for_metrics)], response_class=Response)
async def metrics(service: Service) -> Response:
    """Prometheus metrics: requests by route and status, latency, batch sizes, queue depth (a key only with
    serve.metrics_require_key)."""
    service.metrics.queue_depth.set(service.batcher.queue_depth)
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
