"""The model card route."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.
from typing import Any

from fastapi import APIRouter, Depends, Response

from posevit.serve.api.deps import Service, require_key
from posevit.serve.api.routes_predict import VERSION_HEADER

router = APIRouter(dependencies=[Depends(require_key)], tags=["model"])


@router.get("/v1/model")
async def model(service: Service, response: Response) -> dict[str, Any]:
    """The model card: name, version (serving new requests now), alias, source, labels, test metrics, data config,
    batching, and with serve.follow the alias it follows: last poll, last swap, last error."""
    response.headers[VERSION_HEADER] = service.served.version
    return service.model_card()
