"""Processed splits -> batches of (pixels, labels) with the model's transforms."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import datasets
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from posevit.core.paths import PROCESSED_DIR
from posevit.data.store import class_names, load_split, with_pixels


class ActionDataModule(pl.LightningDataModule):
    def __init__(
        self,
        train_transform: Callable,
        eval_transform: Callable,
        batch_size: int,
        num_workers: int,
        data_dir: Path = PROCESSED_DIR,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        self.train_transform, self.eval_transform = train_transform, eval_transform
        self.batch_size, self.num_workers, self.data_dir = batch_size, num_workers, data_dir
        self.drop_last = drop_last  # mixup/CutMix pair images within a batch, so it must be even
        self.splits: dict[str, datasets.Dataset] = {}

    @property
    def class_names(self) -> list[str]:
        return class_names(load_split("train", self.data_dir))

    def setup(self, stage: str | None = None) -> None:
        self.splits["train"] = with_pixels(load_split("train", self.data_dir), self.train_transform)
        self.splits["val"] = with_pixels(load_split("val", self.data_dir), self.eval_transform)

    def _loader(self, split: str, shuffle: bool, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            self.splits[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)
