"""The Gradio page: upload (or webcam / clipboard) a photo, get the top actions, a heat map and timings.

Every upload goes through one decoder (`posevit.data.images.decode_rgb`): any PIL mode, EXIF
rotation, first frame of animations, a pixel limit checked on the header before decoding.
Classification goes through the server's micro-batcher, like every API request. A bad file
gets a message in the page; the server keeps serving.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import gradio as gr
from gradio_client import utils as client_utils
from PIL import Image

from posevit.core.errors import ImageError, PosevitError
from posevit.data.images import decode_rgb, source_size
from posevit.serve.service import InferenceService, Limits

TOP_K = 5


class UploadImage(gr.Image):
    """gr.Image that passes the raw uploaded file to posevit's decoder and never fetches URLs."""

    def get_block_name(self) -> str:
        return "image"  # the frontend of gr.Image

    # gr.Image declares arrays/PIL/paths; this subclass hands posevit's decoder the raw upload instead.
    def preprocess(self, payload: Any) -> str | bytes | None:  # type: ignore[override]  # raw upload, see above
        if payload is None:
            return None
        if payload.path:
            return payload.path
        if payload.url and payload.url.startswith("data:"):  # pasted/base64 images
            return base64.b64decode(payload.url.split(",", 1)[1])
        raise gr.Error("No image file arrived with the request.")

    async def async_move_resource_to_block_cache(self, url_or_file_path: str | Path | None) -> str | None:
        if url_or_file_path is not None and client_utils.is_http_url_like(str(url_or_file_path)):
            raise gr.Error("This app does not fetch images from URLs: download the image and upload the file.")
        return await super().async_move_resource_to_block_cache(url_or_file_path)


def read_upload_bytes(upload: str | bytes | None, limits: Limits) -> bytes:
    """The uploaded file's bytes, or a gr.Error saying why there are none to use."""
    if upload is None:
        raise gr.Error("Upload an image first (or pick an example).")
    if isinstance(upload, bytes):
        return upload
    size = os.path.getsize(upload)
    if size > limits.max_file_bytes:
        raise gr.Error(f"The file is {size / 2**20:.1f} MB; the limit is {limits.max_file_bytes / 2**20:.0f} MB.")
    return Path(upload).read_bytes()


def read_upload(upload: str | bytes | None, limits: Limits) -> Image.Image:
    """The uploaded image as upright RGB, or a gr.Error that says what is wrong with it."""
    data = read_upload_bytes(upload, limits)
    try:
        return decode_rgb(data, limits.max_pixels, limit_name="the app's pixel limit")
    except ImageError as exc:
        raise gr.Error(f"Cannot use this file: {exc}.") from None


def model_card(service: InferenceService) -> str:
    card = service.model_card()
    lines = [
        f"**Model** `{card['name']}` · version `{card['version']}` · {len(card['labels'])} actions",
        f"**From** {card['source']}",
    ]
    metrics = card["test_metrics"]
    if metrics:
        lines.append(
            f"**Test accuracy** {metrics['accuracy']:.3f} (95% CI {metrics['accuracy_ci_low']:.3f}–"
            f"{metrics['accuracy_ci_high']:.3f}) · F1 weighted {metrics['f1_weighted']:.3f} · "
            f"F1 macro {metrics['f1_macro']:.3f} · n = {metrics['n_test']}"
        )
    else:
        lines.append("**Test metrics** not available for this model")
    if card["freeze_blocks"] is not None:
        lines.append(f"**Frozen blocks** {card['freeze_blocks']}")
    return "  \n".join(lines)


def build_page(service: InferenceService, examples: list[str]) -> gr.Blocks:
    predictor = service.predictor

    async def classify(upload: str | bytes | None, explain: bool) -> tuple[Any, ...]:
        data = read_upload_bytes(upload, service.limits)
        try:
            image, result = await service.classify(data)
            explained = explain and predictor.explains
            overlay = await service.heat_map_overlay(image, result.top(1)[0][0]) if explained else None
        except ImageError as exc:
            raise gr.Error(f"Cannot use this file: {exc}.") from None
        except PosevitError as exc:  # overloaded or timed out: say so, keep serving
            raise gr.Error(str(exc)) from None
        timing = (
            f"Inference **{result.seconds * 1000:.0f} ms** ({predictor.precision}, {predictor.device}, "
            f"batched) · image {'×'.join(map(str, source_size(image)))} · version {result.version}"
        )
        return result.probabilities, overlay, timing, result.probabilities

    with gr.Blocks(title="posevit: what is this person doing?") as app:
        gr.Markdown("# posevit — what is this person doing?\nA Vision Transformer fine-tuned on 15 human actions.")
        gr.Markdown(model_card(service), elem_id="model-card")
        with gr.Row():
            with gr.Column():
                image = UploadImage(
                    type="filepath", sources=["upload", "webcam", "clipboard"], label="Photo", elem_id="photo"
                )
                explain = gr.Checkbox(
                    value=predictor.explains,
                    interactive=predictor.explains,
                    label="Show where the model looked (gradient heat map)"
                    + ("" if predictor.explains else f": needs backend torch, this is {predictor.backend}"),
                )
                submit = gr.Button("Classify", variant="primary", elem_id="classify")
                gr.Examples(examples=[[path] for path in examples], inputs=[image], label="Examples")
            with gr.Column():
                labels = gr.Label(num_top_classes=TOP_K, label="Top actions", elem_id="labels")
                heat_map = gr.Image(
                    type="pil", label="Heat map (over the centre crop the model sees)", interactive=False
                )
                timing = gr.Markdown(elem_id="timing")
                with gr.Accordion("All probabilities", open=False):
                    everything = gr.JSON(label="probabilities")
        submit.click(
            classify, inputs=[image, explain], outputs=[labels, heat_map, timing, everything], api_name="predict"
        )
    return app
