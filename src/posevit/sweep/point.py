"""One sweep point: train (and by default evaluate on the test split) into its own run directory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback

from posevit.core.config import validate_config
from posevit.core.entrypoint import write_json
from posevit.core.errors import DataError
from posevit.core.paths import PROCESSED_DIR
from posevit.evaluate.run import EvalPaths, evaluate
from posevit.infer.teacher import fetch_teacher
from posevit.train.loop import TrainPaths, train

RUN_FILE = "run.json"


def run_point(
    raw: DictConfig | Mapping[str, Any],
    run_dir: Path,
    overrides: list[str],
    callbacks: Sequence[Callback] = (),
    test: bool = True,
) -> dict:
    """Train into `run_dir`, evaluate on the test split when `test` (a search's trials do not: they are selected
    on val, and the test split stays unseen until the chosen setting is re-run); writes and returns run.json."""
    plain = OmegaConf.to_container(raw, resolve=True) if isinstance(raw, DictConfig) else dict(raw)
    cfg = validate_config(plain)
    data = PROCESSED_DIR.resolve()
    if not (data / "test").exists():
        raise DataError(f"{PROCESSED_DIR}/ has no splits: run `dvc repro preprocess` (or `dvc pull`) first")
    paths = TrainPaths.under(run_dir, data, fetch_teacher(cfg.train.distill))
    train_metrics = train(cfg, paths, callbacks)
    if train_metrics is None:  # a non-zero rank of a distributed run
        return {}
    write_json(paths.metrics, train_metrics)
    record: dict[str, Any] = {
        "overrides": overrides,
        "params": cfg.model_dump(include={"model", "train", "trainer"}, mode="json"),
        "train": train_metrics,
    }
    if test:
        record["test"] = evaluate(cfg, EvalPaths.under(run_dir, models=paths.models, data=data))
    write_json(run_dir / RUN_FILE, record)
    return record
