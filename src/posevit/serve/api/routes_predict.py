"""The classification routes: one image, a batch of images, and the replaced system's route.

Each waits for the micro-batcher, and gives its place up when the client hangs up first. Every answer says which
model version gave it (`model.version` in the JSON, and the `X-Model-Version` header, also on the replaced
system's route, whose body stays as its clients know it): with `serve.follow` a new version may answer the next
request.
"""

# No `from __future__ import annotations`: FastAPI reads these annotations at run time.
import asyncio
from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, File, Request, Response, UploadFile
from PIL import Image

import posevit.serve.api.schemas as schemas
from posevit.data.images import source_size
from posevit.serve.api.deps import LegacyTopK, Log, Service, TopK, require_key
from posevit.serve.api.errors import ApiError, ClientGone, as_api_error
from posevit.serve.service import InferenceService, ServedPrediction

T = TypeVar("T")
Decoded = tuple[Image.Image, ServedPrediction]
VERSION_HEADER = "X-Model-Version"

router = APIRouter(dependencies=[Depends(require_key)])


async def classify(service: InferenceService, upload: UploadFile) -> Decoded:
    try:
        if upload.size is not None:  # known from the multipart part: refuse before reading it
            service.check_size(upload.size)
        return await service.classify(await upload.read())
    except Exception as exc:
        raise as_api_error(exc) from None


async def wait_for_disconnect(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read, so only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


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


def as_response(decoded: Decoded, top_k: int) -> schemas.Prediction:
    image, prediction = decoded
    width, height = source_size(image)
    return schemas.Prediction(
        model=schemas.ModelRef(name=prediction.model_name, version=prediction.version),
        predictions=[schemas.LabelProbability(label=label, probability=p) for label, p in prediction.top(top_k)],
        inference_ms=round(prediction.seconds * 1000, 2),
        image=schemas.ImageSize(width=width, height=height),
    )


@router.post("/v1/predict", response_model=schemas.Prediction, tags=["predict"])
async def predict(
    request: Request,
    response: Response,
    service: Service,
    file: Annotated[UploadFile, File(description="one image")],
    top_k: TopK,
    log: Log,
) -> schemas.Prediction:
    """Classify one image."""
    image, prediction = await unless_disconnected(request, classify(service, file))
    log.record(request, prediction.version, image, prediction, top_k)
    answer = as_response((image, prediction), top_k)
    response.headers[VERSION_HEADER] = answer.model.version
    return answer


@router.post("/v1/predict/batch", response_model=schemas.BatchPrediction, tags=["predict"])
async def predict_batch(
    request: Request,
    response: Response,
    service: Service,
    files: Annotated[list[UploadFile], File(description="images, in order")],
    top_k: TopK,
    log: Log,
) -> schemas.BatchPrediction:
    """Classify several images; each gets its own result or its own error, in the order sent."""
    max_files = service.settings.max_files
    if len(files) > max_files:
        raise ApiError(413, "too_many_files", f"{len(files)} files; the limit is {max_files} (serve.max_files)")
    outcomes = await unless_disconnected(
        request, asyncio.gather(*(classify(service, file) for file in files), return_exceptions=True)
    )
    results = []
    for file, outcome in zip(files, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            error = as_api_error(outcome)
            results.append(
                schemas.FileResult(
                    filename=file.filename, error=schemas.ErrorDetail(code=error.code, message=error.message)
                )
            )
        else:
            log.record(request, outcome[1].version, *outcome, top_k, index=len(results))
            results.append(schemas.FileResult(filename=file.filename, result=as_response(outcome, top_k)))
    versions = dict.fromkeys(result.result.model.version for result in results if result.result)
    response.headers[VERSION_HEADER] = ", ".join(versions) or service.served.version  # two if a swap came between
    return schemas.BatchPrediction(results=results)


@router.post("/api/v1/pose_classifier", response_model=schemas.PoseClassifierResponse, tags=["compatibility"])
async def pose_classifier(
    request: Request,
    response: Response,
    service: Service,
    file: Annotated[UploadFile, File(description="one image")],
    top_k: LegacyTopK,
    log: Log,
) -> schemas.PoseClassifierResponse:
    """The replaced system's route, for its existing clients (top 3 by default, time in ms; the version that answered
    in the X-Model-Version header)."""
    image, prediction = await unless_disconnected(request, classify(service, file))
    log.record(request, prediction.version, image, prediction, top_k)
    response.headers[VERSION_HEADER] = prediction.version
    top = prediction.top(top_k)
    return schemas.PoseClassifierResponse(
        top_labels=[label for label, _ in top],
        top_probs=[p for _, p in top],
        prediction_time=round(prediction.seconds * 1000, 2),
    )
