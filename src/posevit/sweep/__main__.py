"""Hydra sweeps outside DVC: train and evaluate each point into its own run directory.

    python -m posevit.sweep --multirun model.freeze_blocks=0,1,2,3 train.seed=0,1
    python -m posevit.sweep --multirun hydra/launcher=parallel ...   # local processes (joblib)
    python -m posevit.sweep --multirun hydra/launcher=slurm trainer=multinode ...   # SLURM (submitit)
    python -m posevit.sweep --multirun hparams_search=optuna         # Optuna search (TPE, pruning, SQLite)

Composes conf/ directly (the same groups DVC uses), reads the processed splits of
`dvc repro preprocess`, and never writes a DVC-tracked output: each point writes
models/, metrics/, plots/ and run.json under multirun/<date>/<time>/<job>/.
Then: python -m posevit.sweep.report --hydra multirun/<date>/<time>   (--optuna multirun/search/<study>)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from posevit.core.entrypoint import write_json
from posevit.core.errors import PosevitError
from posevit.core.paths import CONFIG_DIR
from posevit.sweep.point import RUN_FILE, run_point

log = logging.getLogger("posevit.sweep")


# conf/ of the project the sweep is started in (as DVC reads params.yaml there), wherever posevit is installed.
@hydra.main(config_path=str(CONFIG_DIR.resolve()), config_name="config", version_base=None)
def main(raw: DictConfig) -> float:
    """Returns the best epoch's val accuracy: what an optimising sweeper selects on (never the test score,
    which stays in run.json for the report)."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    log.info("sweep point %s -> %s", " ".join(overrides) or "(defaults)", run_dir)
    try:
        if hydra_cfg.sweeper.get("trial") is not None:  # a job of hydra/sweeper=posevit_optuna
            from posevit.sweep.search import run_trial

            return run_trial(raw, run_dir, overrides, hydra_cfg.sweeper)
        record = run_point(raw, run_dir, overrides)
    except PosevitError as exc:  # one bad point is reported, the others still run
        log.error("%s", exc)
        write_json(run_dir / RUN_FILE, {"overrides": overrides, "error": str(exc)})
        raise SystemExit(2) from None
    val, test = record.get("train", {}).get("best_val_acc", float("nan")), record.get("test", {}).get("accuracy")
    log.info("%s: best val accuracy %.4f, test accuracy %s", json.dumps(overrides), val, test)
    return val


if __name__ == "__main__":
    main()
