"""Fast decode (`serve.fast_decode`, `posevit predict --fast-decode`): what JPEG draft mode and the fast NumPy
transform save per image, and what they cost in answers.

    python -m benchmarks.fast_decode [--bundle models] [--test-split data/processed/test] [--repeats 200]

1. Time: ms per 640x480 JPEG (q90) decode + eval transform, exact vs fast, timed in turns, for the demo bundle's
   data config and ViT-B/16's (224 px, crop 0.9: draft mode keeps twice the 248 px resize side, so it cannot
   shrink a 640x480 JPEG there), and for a 4032x3024 phone photo (drafted 1/4 for ViT-B/16, 1/8 for the demo).
2. Answers: the bundle (PyTorch fp32) on the test split, the images as stored (the demo's 96 px PNGs, which
   draft mode leaves alone) and upscaled to 640x480 JPEG q90 in a temporary folder: accuracy with the exact and
   the fast transform, and the fast one's top-1 agreement with the exact one.
Targets: accuracy within 0.005 of the exact transform's and top-1 agreement above 0.99, on both.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import percentiles, photo_jpeg, write_result
from posevit.core.paths import MODELS_DIR, PROCESSED_DIR
from posevit.data.images import decode_rgb
from posevit.infer.backends import load_predictor
from posevit.infer.decode_pool import ImageReader, reader_for
from posevit.infer.model_source import from_folder
from posevit.infer.predictor import Predictor
from posevit.models.bundle_config import DataConfig
from posevit.models.preprocess import EvalPreprocess

MAX_PIXELS = 40_000_000
TARGET_ACCURACY_DROP = 0.005
TARGET_AGREEMENT = 0.99
VIT_B16_DATA = DataConfig(
    input_size=[3, 224, 224],
    interpolation="bicubic",
    mean=[0.485, 0.456, 0.406],
    std=[0.229, 0.224, 0.225],
    crop_pct=0.9,
    crop_mode="center",
)


def exact_reader(data_config: DataConfig) -> ImageReader:
    return ImageReader(EvalPreprocess(data_config))  # equal to timm's eval transform (tests/test_preprocess.py)


def time_readers(readers: dict[str, ImageReader], photo: bytes, repeats: int) -> dict[str, object]:
    """p50 ms of decode + transform per reader, in turns (A B A B ...), with the decode's share."""
    totals: dict[str, list[float]] = {name: [] for name in readers}
    decodes: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(repeats):
        for name, reader in readers.items():
            started = time.perf_counter()
            image = decode_rgb(photo, MAX_PIXELS, draft_side=reader.draft_side)
            decoded = time.perf_counter()
            reader.preprocess(image)
            totals[name].append(time.perf_counter() - started)
            decodes[name].append(decoded - started)
    figures: dict[str, object] = {
        name: {"total": percentiles(totals[name]), "decode_p50_ms": percentiles(decodes[name])["p50_ms"]}
        for name in readers
    }
    exact, fast = (float(np.median(totals[name])) for name in ("exact", "fast"))
    figures["fast_speedup"] = round(exact / fast, 2)
    return figures


def speed(data_config: DataConfig, repeats: int) -> dict[str, object]:
    readers = {"exact": exact_reader(data_config), "fast": reader_for(lambda _: np.zeros(0), data_config, True)}
    return {
        "draft_side": readers["fast"].draft_side,
        "jpeg_640x480": time_readers(readers, photo_jpeg(640, 480), repeats),
        "jpeg_4032x3024": time_readers(readers, photo_jpeg(4032, 3024), max(1, repeats // 10)),
    }


def classify(predictor: Predictor, reader: ImageReader, photos: Sequence[bytes], batch_size: int = 64) -> np.ndarray:
    """Each photo's top-1 class with this reader's decode and transform."""
    classes = []
    for start in range(0, len(photos), batch_size):
        pixels = [reader.read(data, MAX_PIXELS, "--max-pixels")[1] for data in photos[start : start + batch_size]]
        classes.append(predictor.forward(np.stack(pixels)).argmax(axis=1))
    return np.concatenate(classes)


def as_640x480_jpegs(photos: Sequence[bytes], folder: Path) -> list[bytes]:
    """The photos upscaled to 640x480 and saved as JPEG q90 (what a camera or a phone upload looks like)."""
    jpegs = []
    for index, data in enumerate(photos):
        path = folder / f"{index:05d}.jpg"
        decode_rgb(data, MAX_PIXELS).resize((640, 480), Image.Resampling.BICUBIC).save(path, quality=90)
        jpegs.append(path.read_bytes())
    return jpegs


def agreement(predictor: Predictor, photos: Sequence[bytes], labels: np.ndarray) -> dict[str, object]:
    exact_reader_ = ImageReader(predictor.preprocess)
    fast_reader = reader_for(predictor.preprocess, predictor.config.data_config, True)
    exact, fast = classify(predictor, exact_reader_, photos), classify(predictor, fast_reader, photos)
    exact_accuracy, fast_accuracy = float((exact == labels).mean()), float((fast == labels).mean())
    return {
        "exact_accuracy": round(exact_accuracy, 4),
        "fast_accuracy": round(fast_accuracy, 4),
        "accuracy_drop": round(exact_accuracy - fast_accuracy, 4),
        "top1_agreement": round(float((exact == fast).mean()), 4),
    }


def answers(bundle: Path, test_split: Path, limit: int | None) -> dict[str, object]:
    import datasets

    predictor = load_predictor(from_folder(bundle), "cpu", "torch", precision="fp32")
    split = datasets.load_from_disk(str(test_split)).cast_column("image", datasets.Image(decode=False))
    if limit:
        split = split.select(range(min(limit, len(split))))
    photos = [row["bytes"] for row in split["image"]]
    labels = np.asarray(split["labels"])
    with tempfile.TemporaryDirectory() as folder:
        jpegs = as_640x480_jpegs(photos, Path(folder))
    stored = agreement(predictor, photos, labels)
    upscaled = agreement(predictor, jpegs, labels)
    met = all(
        figures["accuracy_drop"] <= TARGET_ACCURACY_DROP and figures["top1_agreement"] > TARGET_AGREEMENT  # type: ignore[operator]
        for figures in (stored, upscaled)
    )
    return {
        "model": predictor.model_name,
        "n_test": len(labels),
        "stored": stored,
        "jpeg_640x480": upscaled,
        "met": met,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=MODELS_DIR, help="the model bundle (after `make demo`)")
    parser.add_argument("--test-split", type=Path, default=PROCESSED_DIR / "test", help="a load_from_disk folder")
    parser.add_argument("--repeats", type=int, default=200, help="timings per reader at 640x480")
    parser.add_argument("--limit", type=int, default=None, help="only the first N test images (a quick look)")
    args = parser.parse_args(argv)
    report: dict[str, object] = {"benchmark": "fast_decode"}
    if not (args.bundle / "config.json").is_file() or not args.test_split.is_dir():
        report["skipped"] = f"no bundle in {args.bundle}/ or no test split in {args.test_split}/: run `make demo`"
    else:
        predictor_config = json.loads((args.bundle / "config.json").read_text(encoding="utf-8"))["data_config"]
        report["speed"] = {
            "demo": speed(predictor_config, args.repeats),
            "vit_b16": speed(VIT_B16_DATA, args.repeats),
        }
        report["answers"] = answers(args.bundle, args.test_split, args.limit)
        report["targets"] = {"max_accuracy_drop": TARGET_ACCURACY_DROP, "min_top1_agreement": TARGET_AGREEMENT}
    print(json.dumps(report, indent=2))
    write_result("fast_decode", report)


if __name__ == "__main__":
    main()
