"""Does the training loader keep the model fed? Images/s that the train DataLoader delivers (decode + the
configured augmentation at the model's input size) for 0, 1, 2 and all workers, against the model's own
training step rate, in one run.

    python -m benchmarks.loader_throughput [--model vit_convstem_tiny] [--batches 20] [--gpu-rate 900]

Reads data/processed/train (`dvc repro preprocess`) and `train` from params.yaml (augmentation,
batch size). Prints JSON: per worker count the loader's images/s, the model's training images/s
on this machine, whether the loader keeps up with it, and for a GPU that trains `--gpu-rate`
images/s (default 900: ViT-B/16 bf16 on one H100, roughly) how many workers it would need.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch.utils.data import DataLoader

from benchmarks.common import machine, write_result
from posevit.core.config import ModelConfig, load_params
from posevit.core.cores import usable_cores
from posevit.core.precision import autocast
from posevit.data.store import LABELS, load_split, with_pixels
from posevit.models.factory import create_model
from posevit.models.transforms import model_data_config
from posevit.train.augment import train_transform


def loader_rate(split, transform, batch_size: int, workers: int, batches: int) -> float:
    """Images/s over `batches` batches after the first (worker start-up is not throughput)."""
    loader = DataLoader(with_pixels(split, transform), batch_size=batch_size, shuffle=True, num_workers=workers)
    iterator = iter(loader)
    next(iterator)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        try:
            images += len(next(iterator)[LABELS])
        except StopIteration:
            break
    return images / (time.perf_counter() - start)


def training_rate(model: torch.nn.Module, size: int, batch_size: int, steps: int) -> float:
    """Images/s of forward + backward + AdamW at `batch_size`, bf16 autocast where the CPU has it."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    pixels, labels = torch.randn(batch_size, 3, size, size), torch.randint(0, 15, (batch_size,))
    model.train()

    def step() -> None:
        with autocast("cpu"):
            loss = torch.nn.functional.cross_entropy(model(pixels).float(), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="timm model name (default: model.name from params.yaml)")
    parser.add_argument("--batches", type=int, default=20, help="batches timed per worker count")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed")
    parser.add_argument("--gpu-rate", type=float, default=900.0, help="images/s a GPU would train")
    args = parser.parse_args()
    cfg = load_params()
    model = create_model(ModelConfig(name=args.model or cfg.model.name), num_classes=15)
    data_config = model_data_config(model)
    size = data_config["input_size"][-1]
    transform = train_transform(data_config, cfg.train.augment)
    split = load_split("train")
    cores = usable_cores()
    rates = {}
    for workers in sorted({0, 1, 2, cores}):
        rates[workers] = loader_rate(split, transform, cfg.train.batch_size, workers, args.batches)
        print(f"{workers} workers: {rates[workers]:.0f} img/s", flush=True)
    train_rate = training_rate(model, size, cfg.train.batch_size, args.steps)
    per_worker = max(rates[1], 1e-9)
    best = max(rates, key=lambda w: rates[w])
    print(
        json.dumps(
            report := {
                "benchmark": "loader_throughput",
                "machine": {**machine(), "cores": cores},
                "model": args.model or cfg.model.name,
                "input_size": size,
                "batch_size": cfg.train.batch_size,
                "augment": cfg.train.augment.model_dump(mode="json"),
                "loader_images_per_s": {str(w): round(r, 1) for w, r in rates.items()},
                "training_images_per_s_here": round(train_rate, 1),
                "loader_keeps_up_here": rates[best] >= train_rate,
                "workers_needed_here": math.ceil(train_rate / per_worker),
                "gpu_images_per_s": args.gpu_rate,
                "gpu_would_starve_with_all_cores": rates[best] < args.gpu_rate,
                "workers_needed_for_gpu": math.ceil(args.gpu_rate / per_worker),
            },
            indent=2,
        )
    )
    write_result(f"loader_throughput-{args.model or cfg.model.name}", report)


if __name__ == "__main__":
    main()
