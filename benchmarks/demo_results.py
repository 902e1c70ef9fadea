"""Snapshot the demo pipeline's metrics (metrics/train.json, test.json, export.json) as a benchmark result.

    python -m benchmarks.demo_results      # after `make demo` (or `dvc repro`), then `python -m benchmarks.render_docs`

The docs show the demo model's figures from benchmarks/results/demo_pipeline.json rather than from metrics/
directly: a fresh `make demo` rewrites metrics/train.json (its wall time differs from run to run), and that must
not make the committed docs stale. Refreshing them is this one explicit step.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.common import write_result
from posevit.core.paths import EXPORT_METRICS, TEST_METRICS, TRAIN_METRICS


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    metrics = {
        name: json.loads(path.read_text(encoding="utf-8"))
        for name, path in (("train", TRAIN_METRICS), ("test", TEST_METRICS), ("export", EXPORT_METRICS))
    }
    print(json.dumps(metrics, indent=2))
    write_result(
        "demo_pipeline",
        {"benchmark": "demo_pipeline", **metrics},
        source="the metrics/*.json that the demo pipeline (`make demo`) wrote, as committed",
    )


if __name__ == "__main__":
    main()
