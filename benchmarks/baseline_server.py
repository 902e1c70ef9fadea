"""The replaced system's server, rebuilt for comparison: FastAPI, a sync endpoint, an fp32 model call per image.

    python -m benchmarks.baseline_server --bundle DIR --port 8001

As it was served: `def` endpoints run in FastAPI's thread pool, each request decodes its upload,
applies the transform and calls the model alone in fp32 under `torch.no_grad()` (the HF
`model(pixel_values=...)` pattern), and answers {top_labels, top_probs, prediction_time}.
Used only by `benchmarks/serve_load.py`; bound to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import torch
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

from posevit.models.bundle import load_bundle


def create_app(bundle_dir: Path) -> FastAPI:
    bundle = load_bundle(bundle_dir)
    model, transform, labels = bundle.model.eval(), bundle.eval_transform(), bundle.labels
    app = FastAPI()

    @app.post("/api/v1/pose_classifier")
    def pose_classifier(file: UploadFile = File(...)) -> dict:  # noqa: B008  (the replaced code's own style)
        started = time.perf_counter()
        image = Image.open(io.BytesIO(file.file.read())).convert("RGB")
        with torch.no_grad():
            probabilities = model(transform(image).unsqueeze(0)).softmax(dim=1)[0]
        top = probabilities.topk(3)
        return {
            "top_labels": [labels[i] for i in top.indices.tolist()],
            "top_probs": top.values.tolist(),
            "prediction_time": (time.perf_counter() - started) * 1000,
        }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.bundle), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
