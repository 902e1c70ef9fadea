"""What the API answers, as pydantic models (they are also its OpenAPI schemas; the names are part of it)."""

from __future__ import annotations

from pydantic import BaseModel


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
    """One image's answer on the wire (built from `posevit.infer.predictor.Prediction`)."""

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
