"""Health for the orchestrator: the process answers (live), the model is loaded and warm (ready). No key needed."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from posevit.serve.api.deps import Service
from posevit.serve.api.errors import error_response
from posevit.serve.api.schemas import ErrorBody

router = APIRouter(tags=["health"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "alive"}


@router.get("/health/ready", responses={503: {"model": ErrorBody}})
async def ready(service: Service) -> Response:
    """The model is loaded and warmed up: send traffic."""
    if service.ready:
        return JSONResponse(
            {"status": "ready", "model": service.predictor.model_name, "version": service.served.version}
        )
    return error_response(503, "not_ready", "the model is still loading", {"Retry-After": "2"})
