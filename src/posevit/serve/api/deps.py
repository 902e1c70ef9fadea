"""What the routes ask FastAPI for (`Depends`): the service, keys and prediction log on `app.state`, the key check,
top-k."""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from posevit.serve.api.errors import ApiError
from posevit.serve.api.keys import ApiKeys
from posevit.serve.prediction_log import PredictionLog
from posevit.serve.service import InferenceService

LEGACY_TOP_K = 3  # what the replaced system's route answered


def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


def get_keys(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.keys
    return keys


def get_prediction_log(request: Request) -> PredictionLog:
    prediction_log: PredictionLog = request.app.state.prediction_log
    return prediction_log


Service = Annotated[InferenceService, Depends(get_service)]
Log = Annotated[PredictionLog, Depends(get_prediction_log)]  # serve.prediction_log (off: `record` does nothing)
bearer = HTTPBearer(auto_error=False, description="an API key (when the server has keys configured)")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require_key(keys: Annotated[ApiKeys, Depends(get_keys)], credentials: Credentials) -> None:
    if keys.enabled and not keys.valid(credentials.credentials if credentials else None):
        raise ApiError(
            401, "unauthorized", "send a valid API key as `Authorization: Bearer <key>`", {"WWW-Authenticate": "Bearer"}
        )


def require_key_for_metrics(
    service: Service, keys: Annotated[ApiKeys, Depends(get_keys)], credentials: Credentials
) -> None:
    """The key check, only when serve.metrics_require_key says so (a scraper inside the cluster needs none)."""
    if service.settings.metrics_require_key:
        require_key(keys, credentials)


def _within_labels(service: InferenceService, top_k: int) -> int:
    """The upper bound depends on the model served, so it is checked here, worded as the schema's own check."""
    n_labels = len(service.predictor.labels)
    if top_k > n_labels:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("query", "top_k"),
                    "msg": f"Input should be less than or equal to {n_labels}",
                    "input": top_k,
                    "ctx": {"le": n_labels},
                }
            ]
        )
    return top_k


TOP_K_HELP = "how many labels to return (1..the model's number of labels)"


def top_k(
    service: Service, top_k: Annotated[int | None, Query(ge=1, description=TOP_K_HELP + "; default serve.top_k")] = None
) -> int:
    return _within_labels(service, service.settings.top_k if top_k is None else top_k)


def legacy_top_k(service: Service, top_k: Annotated[int, Query(ge=1, description=TOP_K_HELP)] = LEGACY_TOP_K) -> int:
    return _within_labels(service, top_k)


TopK = Annotated[int, Depends(top_k)]
LegacyTopK = Annotated[int, Depends(legacy_top_k)]
