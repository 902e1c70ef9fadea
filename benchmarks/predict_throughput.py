"""Does `posevit predict`'s torch-free decode pool keep up with the DataLoader it replaced? Images/s of the whole
predict pipeline (read, decode, the 224 px ViT-B/16 eval transform, batches in input order, a forward pass per
batch), for the old DataLoader path and the new pool in threads and in processes, in one run.

    python -m benchmarks.predict_throughput [--images 256] [--rounds 5] [--forward-ms 1.0] [--transform numpy]

Two folders: demo-like (96 px PNGs, as the demo's test split) and 640x480 JPEGs (photo-sized). The forward
pass is a fixed cost (`--forward-ms` per image, a sleep that frees the GIL like a GPU's or ONNX Runtime's
forward does), so the figures measure what the pool changes, not the model. `--transform timm` (the torch
backend's) leaves the process pool out: a forked child that runs torch ops after its parent did can hang
(DataLoader workers avoid it by running torch in one thread), one more reason predict uses threads. The
pipelines run in turns (round-robin, order rotated each round) and the median pass counts. Prints JSON: img/s
per pipeline and folder (whole passes, and after the first batch), and each pool's ratio to the DataLoader (>=
1: at least as fast).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import VIT_B16, machine, photo_jpeg, write_result
from posevit.core.errors import ImageError
from posevit.core.labels import ACTION_CLASSES
from posevit.data.demo import render_sample, sample_rng
from posevit.data.images import decode_rgb
from posevit.infer.folders import Row, classify_files, default_workers
from posevit.infer.inputs import Input
from posevit.infer.predictor import Predictor
from posevit.models.bundle_config import BundleConfig, DataConfig
from posevit.models.factory import create_model
from posevit.models.preprocess import EvalPreprocess
from posevit.models.transforms import model_data_config

MAX_PIXELS = 40_000_000


class FixedCostModel(Predictor):
    """ViT-B/16's eval transform (224 px) with a forward pass of fixed cost per image."""

    backend = "onnx"
    precision = "fixed cost"

    def __init__(self, data_config: DataConfig, transform: Callable[[Image.Image], np.ndarray], ms: float) -> None:
        config = BundleConfig(model_name=VIT_B16.name, labels=list(ACTION_CLASSES), data_config=data_config)
        super().__init__(config, "cpu")
        self.transform, self.seconds_per_image = transform, ms / 1000

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.transform(image)

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds_per_image * len(pixels))
        return np.full((len(pixels), len(self.labels)), 1 / len(self.labels), dtype=np.float32)


# The DataLoader path as `posevit predict` ran it before the pool (infer/folders.py at 4093a2f), the baseline.
class ImageFiles(Dataset):
    def __init__(self, inputs: Sequence[Input], predictor: Predictor) -> None:
        self.inputs, self.predictor = inputs, predictor

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray | None, str | None]:
        item = self.inputs[index]
        try:
            image = decode_rgb(Path(item.path).read_bytes(), MAX_PIXELS, limit_name="--max-pixels")
            return index, self.predictor.preprocess(image), None
        except (ImageError, OSError) as exc:
            return index, None, str(exc)


@dataclass(frozen=True)
class Batch:
    indices: list[int]
    pixels: np.ndarray | None
    good: list[int]
    errors: dict[int, str]


def collate(items: list[tuple[int, np.ndarray | None, str | None]]) -> Batch:
    good = [position for position, (_, pixels, _) in enumerate(items) if pixels is not None]
    arrays = [pixels for _, pixels, _ in items if pixels is not None]
    return Batch(
        [index for index, _, _ in items],
        np.stack(arrays) if arrays else None,
        good,
        {position: error for position, (_, _, error) in enumerate(items) if error is not None},
    )


def dataloader_rows(
    inputs: Sequence[Input], predictor: Predictor, batch_size: int, workers: int
) -> Iterator[list[Row]]:
    loader = DataLoader(
        ImageFiles(inputs, predictor),
        batch_size=batch_size,
        num_workers=min(workers, -(-len(inputs) // batch_size)),
        collate_fn=collate,
    )
    k = min(5, len(predictor.labels))
    for batch in loader:
        rows = [Row(inputs[index].path, [], batch.errors.get(position)) for position, index in enumerate(batch.indices)]
        if batch.pixels is not None:
            probabilities = predictor.forward(batch.pixels)
            classes = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
            for position, row, row_classes in zip(batch.good, probabilities, classes, strict=True):
                rows[position] = Row(rows[position].path, [(predictor.labels[c], float(row[c])) for c in row_classes])
        yield rows


def write_folders(root: Path, images: int) -> dict[str, list[Input]]:
    demo, photos = root / "demo", root / "photos"
    demo.mkdir()
    photos.mkdir()
    for index in range(images):
        render_sample(index % len(ACTION_CLASSES), sample_rng(0, index), 96).save(demo / f"{index:05d}.png")
        (photos / f"{index:05d}.jpg").write_bytes(photo_jpeg(640, 480, seed=index))
    return {
        "demo_96px_png": [Input(str(p)) for p in sorted(demo.iterdir())],
        "photo_640x480_jpeg": [Input(str(p)) for p in sorted(photos.iterdir())],
    }


def images_per_second(
    pipeline: Callable[[list[Input]], Iterator[list[Row]]], inputs: list[Input]
) -> tuple[float, float]:
    """(whole pass, pool start-up included: each `posevit predict` run pays it once; after the first batch:
    the rate a long run settles at)."""
    start = time.perf_counter()
    rows, first_rows, first_at = 0, 0, 0.0
    for batch in pipeline(inputs):
        rows += len(batch)
        if not first_rows:
            first_rows, first_at = rows, time.perf_counter()
    end = time.perf_counter()
    assert rows == len(inputs)
    return rows / (end - start), (rows - first_rows) / (end - first_at)


def ratios(rates: dict[str, dict[str, float]], pool: str) -> dict[str, float]:
    return {folder: round(by[pool] / by["dataloader"], 2) for folder, by in rates.items() if pool in by}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="images per folder")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes per pipeline and folder")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=default_workers(), help="default: predict's (cores, <= 8)")
    parser.add_argument("--forward-ms", type=float, default=1.0, help="forward pass cost per image, ms")
    parser.add_argument(
        "--transform", choices=["numpy", "timm"], default="numpy", help="ONNX backends' transform, or torch's (timm)"
    )
    args = parser.parse_args()
    data_config = model_data_config(create_model(VIT_B16, num_classes=len(ACTION_CLASSES)))
    if args.transform == "numpy":
        transform: Callable[[Image.Image], np.ndarray] = EvalPreprocess(data_config)
    else:
        from posevit.models.transforms import eval_transform

        timm_transform = eval_transform(data_config)
        transform = lambda image: timm_transform(image).numpy()  # noqa: E731
    model = FixedCostModel(data_config, transform, args.forward_ms)
    pipelines: dict[str, Callable[[list[Input]], Iterator[list[Row]]]] = {
        "dataloader": lambda inputs: dataloader_rows(inputs, model, args.batch_size, args.workers),
        "threads": lambda inputs: classify_files(inputs, model, args.batch_size, 5, args.workers, kind="threads"),
    }
    if args.transform == "numpy":  # a forked child running torch ops after its parent's thread pool did can hang
        pipelines["processes"] = lambda inputs: classify_files(
            inputs, model, args.batch_size, 5, args.workers, kind="processes"
        )
    results: dict[str, dict[str, float]] = {}
    steady: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        for folder, inputs in write_folders(Path(directory), args.images).items():
            passes: dict[str, list[tuple[float, float]]] = {name: [] for name in pipelines}
            for round_ in range(args.rounds):
                names = list(pipelines)
                for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                    passes[name].append(images_per_second(pipelines[name], inputs))
            results[folder] = {name: round(statistics.median(w for w, _ in rates), 1) for name, rates in passes.items()}
            steady[folder] = {name: round(statistics.median(s for _, s in rates), 1) for name, rates in passes.items()}
            print(f"{folder}: {results[folder]} img/s (after the first batch: {steady[folder]})", file=sys.stderr)
    report = {
        "benchmark": "predict_throughput",
        "machine": {**machine(), "cores": default_workers()},
        "images_per_folder": args.images,
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "forward_ms_per_image": args.forward_ms,
        "transform": f"{args.transform} ({VIT_B16.name}, {data_config['input_size'][-1]} px)",
        "images_per_s": results,
        "images_per_s_after_first_batch": steady,
        "threads_vs_dataloader": ratios(results, "threads"),
        "processes_vs_dataloader": ratios(results, "processes") if "processes" in pipelines else None,
        "threads_vs_dataloader_after_first_batch": ratios(steady, "threads"),
    }
    print(json.dumps(report, indent=2))
    write_result(f"predict_throughput-{args.transform}", report)


if __name__ == "__main__":
    main()
