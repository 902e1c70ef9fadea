"""DVC stage `train`: data/processed/{train,val} -> models/ (bundle) + metrics/train.json + curves."""

from posevit.core.config import load_params
from posevit.core.entrypoint import run_stage, write_json
from posevit.train.curves import plot_training_curves
from posevit.train.loop import TrainPaths, train


def main() -> None:
    cfg = load_params()
    teacher = None
    if cfg.train.distill is not None and cfg.train.distill.fetched:
        # Imported only for a registry teacher: the stage's code deps (dvc.yaml) stay the training code.
        from posevit.infer.teacher import fetch_teacher

        teacher = fetch_teacher(cfg.train.distill)
    paths = TrainPaths(teacher=teacher)
    metrics = train(cfg, paths)
    if metrics is None:  # a non-zero rank of a distributed run: rank 0 writes the outputs
        return
    write_json(paths.metrics, metrics)
    plot_training_curves(paths.live, paths.curves)
    print(", ".join(f"{key} {value}" for key, value in metrics.items()))


if __name__ == "__main__":
    run_stage(main)
