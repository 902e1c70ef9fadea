"""Training throughput of ViT-B/16 (224 px, batch 16, 2 frozen blocks) as the train stage runs it,
against a plain fp32 eager PyTorch loop of the same model, in the same run.

    python -m benchmarks.train_throughput [--steps 6] [--warmup 2]

Prints JSON: images/s of both, the speed-up, the machine's bf16 matmul peak measured now,
the FLOPs of one training step (counted by torch's FlopCounterMode) and the resulting
model-FLOP utilisation. Targets: speed-up >= 3.5, MFU >= 60% of the measured peak. It also
prints the fp32 GEMM peak and the ceiling on the speed-up that the two peaks allow.
"""

from __future__ import annotations

import argparse
import json
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import machine, matmul_peak_tflops
from posevit.core.config import ModelConfig, TrainConfig
from posevit.core.precision import resolve_precision
from posevit.models.factory import create_model
from posevit.models.freeze import freeze_blocks
from posevit.train.lightning_module import ActionClassifier

MODEL = ModelConfig(name="vit_base_patch16_224", pretrained=False, freeze_blocks=2)
BATCH, SIZE, CLASSES = 16, 224, 15


class RandomImages(Dataset):
    """Decoded, transformed images: measures the model, not JPEG decoding."""

    def __init__(self, length: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.pixels = torch.randn(BATCH, 3, SIZE, SIZE, generator=generator)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pixels": self.pixels[index % BATCH], "labels": torch.tensor(index % CLASSES)}


def build():
    model = create_model(MODEL, num_classes=CLASSES)
    return model, freeze_blocks(model, MODEL.freeze_blocks)


class StepTimer(pl.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.times, self._start = warmup, [], 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self._start)


def stage_images_per_s(steps: int, warmup: int) -> tuple[float, str]:
    """The train stage's path: LightningModule, auto precision, channels_last, Lightning Trainer."""
    model, frozen = build()
    model = model.to(memory_format=torch.channels_last)
    precision = resolve_precision("auto", "cpu")
    timer = StepTimer(warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision=precision,
        max_steps=steps + warmup,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_val_batches=0,
    )
    loader = DataLoader(RandomImages(BATCH * (steps + warmup)), batch_size=BATCH)
    trainer.fit(ActionClassifier(model, CLASSES, TrainConfig(lr=1e-4), frozen), train_dataloaders=loader)
    return BATCH * len(timer.times) / sum(timer.times), precision


def plain_fp32_images_per_s(steps: int, warmup: int) -> float:
    """The baseline: the same model in an eager fp32 loop, as a first PyTorch script would write it."""
    model, _ = build()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    data = RandomImages(BATCH)
    pixels = data.pixels
    labels = torch.arange(BATCH) % CLASSES
    times = []
    for step in range(steps + warmup):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(pixels), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return BATCH * len(times) / sum(times)


def training_step_flops() -> int:
    model, _ = build()
    pixels = torch.randn(BATCH, 3, SIZE, SIZE)
    with FlopCounterMode(display=False) as counter:
        model(pixels).sum().backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)

    peak = matmul_peak_tflops(torch.bfloat16)
    fp32_peak = matmul_peak_tflops(torch.float32)
    flops_per_image = training_step_flops() / BATCH
    stage, precision = stage_images_per_s(args.steps, args.warmup)
    baseline = plain_fp32_images_per_s(args.steps, args.warmup)
    achieved = stage * flops_per_image / 1e12
    baseline_achieved = baseline * flops_per_image / 1e12
    print(
        json.dumps(
            {
                "benchmark": "train_throughput",
                "model": MODEL.name,
                "image_size": SIZE,
                "batch_size": BATCH,
                "freeze_blocks": MODEL.freeze_blocks,
                "precision": precision,
                "machine": machine(),
                "stage_images_per_s": round(stage, 2),
                "fp32_loop_images_per_s": round(baseline, 2),
                "speedup": round(stage / baseline, 2),
                "target_speedup": 3.5,
                "train_gflops_per_image": round(flops_per_image / 1e9, 1),
                "achieved_tflops": round(achieved, 3),
                "bf16_matmul_peak_tflops": round(peak, 3),
                "mfu": round(achieved / peak, 3),
                "target_mfu": 0.6,
                "fp32_matmul_peak_tflops": round(fp32_peak, 3),
                "fp32_loop_tflops": round(baseline_achieved, 3),
                # Even at 100% of the bf16 peak the stage cannot beat the fp32 loop by more than this:
                "speedup_ceiling_at_bf16_peak": round(peak / baseline_achieved, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
