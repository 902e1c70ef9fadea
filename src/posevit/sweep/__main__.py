"""Hydra sweeps outside DVC: train and evaluate each point into its own run directory.

    python -m posevit.sweep --multirun model.freeze_blocks=0,1,2,3 train.seed=0,1
    python -m posevit.sweep --multirun hydra/launcher=parallel ...   # local processes (joblib)
    python -m posevit.sweep --multirun hydra/launcher=slurm trainer=multinode ...   # SLURM (submitit)

Composes conf/ directly (the same groups DVC uses), reads the processed splits of
`dvc repro preprocess`, and never writes a DVC-tracked output: each point writes
models/, metrics/, plots/ and run.json under multirun/<date>/<time>/<job>/.
Then: python -m posevit.sweep.report --hydra multirun/<date>/<time>
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from posevit.core.config import validate_config
from posevit.core.entrypoint import write_json
from posevit.core.errors import DataError, PosevitError
from posevit.core.paths import CONFIG_DIR, PROCESSED_DIR
from posevit.evaluate.run import EvalPaths, evaluate
from posevit.infer.teacher import fetch_teacher
from posevit.train.loop import TrainPaths, train

log = logging.getLogger("posevit.sweep")
RUN_FILE = "run.json"


def run_point(raw: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    cfg = validate_config(OmegaConf.to_container(raw, resolve=True))
    data = PROCESSED_DIR.resolve()
    if not (data / "test").exists():
        raise DataError(f"{PROCESSED_DIR}/ has no splits: run `dvc repro preprocess` (or `dvc pull`) first")
    paths = TrainPaths(
        data=data,
        models=run_dir / "models",
        checkpoints=run_dir / "checkpoints",
        live=run_dir / "dvclive",
        metrics=run_dir / "metrics" / "train.json",
        curves=run_dir / "plots" / "training_curves.png",
        teacher=fetch_teacher(cfg.train.distill),
    )
    train_metrics = train(cfg, paths)
    if train_metrics is None:  # a non-zero rank of a distributed run
        return {}
    write_json(paths.metrics, train_metrics)
    test_metrics = evaluate(cfg, EvalPaths.under(run_dir, models=paths.models, data=data))
    record = {
        "overrides": overrides,
        "params": cfg.model_dump(include={"model", "train", "trainer"}, mode="json"),
        "train": train_metrics,
        "test": test_metrics,
    }
    write_json(run_dir / RUN_FILE, record)
    return record


# conf/ of the project the sweep is started in (as DVC reads params.yaml there), wherever posevit is installed.
@hydra.main(config_path=str(CONFIG_DIR.resolve()), config_name="config", version_base=None)
def main(raw: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    log.info("sweep point %s -> %s", " ".join(overrides) or "(defaults)", run_dir)
    try:
        record = run_point(raw, run_dir, overrides)
    except PosevitError as exc:  # one bad point is reported, the others still run
        log.error("%s", exc)
        write_json(run_dir / RUN_FILE, {"overrides": overrides, "error": str(exc)})
        raise SystemExit(2) from None
    accuracy = record.get("test", {}).get("accuracy", float("nan"))
    log.info("%s: test accuracy %.4f", json.dumps(overrides), accuracy)
    return accuracy  # what an optimising sweeper (e.g. Optuna) maximises


if __name__ == "__main__":
    main()
