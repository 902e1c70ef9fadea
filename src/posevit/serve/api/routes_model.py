"""The model card route."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.
from typing import Any

from fastapi import APIRouter, Depends

from posevit.serve.api.deps import Service, require_key

router = APIRouter(dependencies=[Depends(require_key)], tags=["model"])


@router.get("/v1/model")
async def model(service: Service) -> dict[str, Any]:
    """The model card: name, version, source, labels, test metrics, data config, batching."""
    return service.model_card()
