"""A distilled student against its teacher on the CPU backends: batch-1 latency timed in turns, and test accuracy.

    python -m benchmarks.distill --teacher models --student multirun/<date>/<time>/<job>/models [--repeats 300]

Both bundles are exported as the export stage exports them (`posevit.export.run.export`: ONNX fp32 and dynamic
int8, OpenVINO IR fp32 and NNCF static int8 calibrated on train images, with its parity on data/processed/test),
then every backend of both runs one image in turns (teacher, student, teacher, ...; benchmarks.backends'
`interleaved_medians`), so the ratios hold on a shared machine, then a batch of `--batch-size` the same way
(throughput: at batch 1 a model this small is mostly fixed per-call cost, in a batch its FLOPs show). Reports
each backend's p50 and images/s for both, the student/teacher ratios on each, and on the fastest backend of
each. Writes benchmarks/results/distill.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.backends import LogitsFn, interleaved_medians, runners
from benchmarks.common import write_result
from posevit.core.config import ExportConfig
from posevit.core.paths import PROCESSED_DIR
from posevit.export.run import ExportPaths, export
from posevit.models.bundle import load_bundle
from posevit.models.freeze import count_parameters

ROLES = ("teacher", "student")


def exported(role: str, models: Path, root: Path, data: Path) -> tuple[dict, dict]:
    """(every backend's logits function, the export's parity metrics) of one bundle."""
    exports = root / role / "exports"
    # It reports, it does not gate: a weak student's int8 loss is a figure here, not a reason to stop.
    cfg = ExportConfig(min_top1_agreement=0.0, max_int8_accuracy_drop=1.0)
    metrics = export(cfg, ExportPaths(models=models, data=data, exports=exports, log=root / f"{role}.log"))
    bundle = load_bundle(models)
    found = {name: run for name, run in runners(bundle, exports, "cpu").items() if not name.startswith("torch")}
    return found, dict(metrics)


def by_role(figures: dict[str, float], digits: int) -> dict[str, dict[str, float]]:
    """{"teacher onnx_fp32": x, ...} -> {"teacher": {"onnx_fp32": x, ...}, "student": {...}}."""
    return {
        role: {name.split(" ", 1)[1]: round(value, digits) for name, value in figures.items() if name.startswith(role)}
        for role in ROLES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher's bundle folder")
    parser.add_argument("--student", type=Path, required=True, help="the student's bundle folder")
    parser.add_argument("--data", type=Path, default=PROCESSED_DIR, help="processed splits (calibration, parity)")
    parser.add_argument("--repeats", type=int, default=300, help="batch-1 timings per backend and model")
    parser.add_argument("--batch-size", type=int, default=32, help="the batch the throughput is timed at")
    args = parser.parse_args()

    bundles = {role: load_bundle(folder) for role, folder in zip(ROLES, (args.teacher, args.student), strict=True)}
    sizes = {bundle.data_config["input_size"][-1] for bundle in bundles.values()}
    if len(sizes) != 1:
        sys.exit(f"teacher and student take different input sizes ({sorted(sizes)}): time them one by one")
    with tempfile.TemporaryDirectory() as directory:
        timed: dict[str, LogitsFn] = {}
        accuracy: dict[str, dict[str, float]] = {}
        for role, folder in zip(ROLES, (args.teacher, args.student), strict=True):
            backends, metrics = exported(role, folder, Path(directory), args.data)
            timed |= {f"{role} {name}": run for name, run in backends.items()}
            accuracy[role] = {"pytorch_fp32": metrics["pytorch_accuracy"]} | {
                name: metrics[name]["accuracy"] for name in backends if name in metrics
            }
        size, rng = sizes.pop(), np.random.default_rng(0)
        medians = interleaved_medians(timed, rng.standard_normal((1, 3, size, size), dtype=np.float32), args.repeats)
        batch = rng.standard_normal((args.batch_size, 3, size, size), dtype=np.float32)
        batch_medians = interleaved_medians(timed, batch, max(3, args.repeats // 10))
    p50 = by_role({name: seconds * 1000 for name, seconds in medians.items()}, 3)
    throughput = by_role({name: args.batch_size / seconds for name, seconds in batch_medians.items()}, 1)
    fastest = {role: min(p50[role], key=p50[role].__getitem__) for role in ROLES}
    busiest = {role: max(throughput[role], key=throughput[role].__getitem__) for role in ROLES}
    report = {
        "benchmark": "distill",
        "models": {role: bundles[role].config.model_name for role in ROLES},
        "bundles": {"teacher": str(args.teacher), "student": str(args.student)},
        "parameters": {role: count_parameters(bundles[role].model)[1] for role in ROLES},
        "batch1_p50_ms": p50,
        "student_vs_teacher_p50": {
            name: round(p50["student"][name] / p50["teacher"][name], 3) for name in p50["student"]
        },
        "fastest": {role: {"backend": fastest[role], "batch1_p50_ms": p50[role][fastest[role]]} for role in ROLES},
        "fastest_speedup": round(p50["teacher"][fastest["teacher"]] / p50["student"][fastest["student"]], 2),
        f"batch{args.batch_size}_images_per_s": throughput,
        "student_vs_teacher_throughput": {
            name: round(throughput["student"][name] / throughput["teacher"][name], 2) for name in throughput["student"]
        },
        "highest_throughput": {
            role: {"backend": busiest[role], "images_per_s": throughput[role][busiest[role]]} for role in ROLES
        },
        "highest_throughput_speedup": round(
            throughput["student"][busiest["student"]] / throughput["teacher"][busiest["teacher"]], 2
        ),
        "test_accuracy": accuracy,
    }
    print(json.dumps(report, indent=2))
    write_result("distill", report)


if __name__ == "__main__":
    main()
