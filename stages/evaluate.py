"""DVC stage `evaluate`: models/ + data/processed/test -> metrics/test.json, plots (the error gallery in
plots/errors/), metrics/report.xlsx."""

from posevit.core.config import load_params
from posevit.core.entrypoint import run_stage
from posevit.evaluate.run import evaluate


def main() -> None:
    cfg = load_params()
    metrics = evaluate(cfg)
    low, high = metrics["accuracy_ci_low"], metrics["accuracy_ci_high"]
    print(
        f"test accuracy {metrics['accuracy']:.4f} ({cfg.evaluate.confidence_level:.0%} CI {low:.4f}-{high:.4f}), "
        f"f1_weighted {metrics['f1_weighted']:.4f}, f1_macro {metrics['f1_macro']:.4f}, n={metrics['n_test']}"
    )


if __name__ == "__main__":
    run_stage(main)
