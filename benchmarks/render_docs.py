"""Render docs/benchmarks.md from benchmarks/results/*.json and the page's prose (benchmarks/page.md).

    python -m benchmarks.render_docs            # rewrite docs/benchmarks.md
    python -m benchmarks.render_docs --check    # exit 1 when the committed page is stale

Figures are never typed into the docs: each benchmark writes its result (`write_result` in benchmarks/common.py),
the prose around them lives in benchmarks/page.md, and tests/test_docs.py fails when the page is stale.
Reads JSON only, so it needs neither torch nor the benchmarks' own imports.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from posevit.devtools.generated_page import write_or_check

ROOT = Path(__file__).parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "benchmarks" / "page.md"
PAGE = ROOT / "docs" / "benchmarks.md"
DEMO = "demo_pipeline"  # the demo's metrics (benchmarks/demo_results.py): a table of their own, not a benchmark row


def _get(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _say(record: dict[str, Any], *parts: tuple[str, str]) -> str:
    """Join 'template with {}' for each (template, key) whose key is in the record; absent figures are left out."""
    return ", ".join(template.format(_get(record, key)) for template, key in parts if _get(record, key) is not None)


def _levels(levels: list[dict[str, Any]] | None) -> str:
    said = []
    for level in levels or []:
        figures = _say(
            level,
            ("{} req/s", "requests_per_s"),
            ("p50 {} ms", "p50_ms"),
            ("p95 {} ms", "p95_ms"),
            ("{} errors", "errors"),
        )
        said.append(f"c={level['concurrency']}: {figures}")
    return "; ".join(said)


def _train(r: dict[str, Any]) -> list[str]:
    ours = _say(r, ("{} img/s", "stage_images_per_s"), ("{}", "precision"), ("MFU {}", "stage_mfu"))
    compiled = _say(r, ("compiled {} img/s", "compiled_stage_images_per_s"), ("{}x the eager stage", "compile_speedup"))
    ours += f"; {compiled}" if compiled else ""
    ratio = _say(r, ("{}x", "speedup"), ("ceiling {}x", "speedup_ceiling_at_bf16_peak"))
    return [ours, _say(r, ("fp32 eager loop {} img/s", "fp32_loop_images_per_s")), ratio, _speed_targets(r)]


def _eval(r: dict[str, Any]) -> list[str]:
    ours = _say(r, ("{} img/s", "evaluate_images_per_s"), ("MFU {}", "evaluate_mfu"))
    base = _say(r, ("per-image fp32 loop {} img/s", "per_image_fp32_images_per_s"))
    return [ours, base, _say(r, ("{}x", "speedup")), _speed_targets(r)]


def _app(r: dict[str, Any]) -> list[str]:
    ours = _say(r, ("p50 {} ms", "app_predict.p50_ms"), ("p95 {} ms", "app_predict.p95_ms"))
    base = _say(r, ("fp32 per-image call p50 {} ms", "fp32_per_image.p50_ms"), ("p95 {} ms", "fp32_per_image.p95_ms"))
    ratio = _say(r, ("p50 ratio {}", "p50_ratio"), ("floor from the GEMM peaks {}", "p50_ratio_floor_from_gemm_peaks"))
    return [ours, base, ratio, _say(r, ("p50 ratio <= {}", "target_p50_ratio"))]


def _serve(r: dict[str, Any]) -> list[str]:
    ours = _levels(r.get("posevit")) + _say(
        r,
        ("; old page path in process p50 {} ms", "old_page_path_in_process.p50_ms"),
        ("posevit's torch page path {} ms", "posevit_torch_page_path_in_process.p50_ms"),
    )
    ratio = _say(
        r,
        ("c=8: {}x req/s", "summary.c8_throughput_ratio"),
        ("p95 ratio {}", "summary.c8_p95_ratio"),
        ("ceiling {}x", "summary.c8_throughput_ratio_ceiling_at_int8_peak"),
        ("served at {} of the backend alone", "summary.c8_share_of_backend_alone"),
        ("c=1 p50 {}x the old page path", "summary.c1_p50_vs_old_page_path"),
        ("ceiling {}x", "summary.c1_p50_vs_old_page_path_ceiling_at_int8_peak"),
    )
    target = _say(r, ("c=8: {}", "summary.c8_targets"), ("c=1: {}", "summary.c1_target"))
    backend = r.get("posevit_backend", "torch") + ", fast decode" * bool(r.get("posevit_fast_decode"))
    return [f"{backend} backend: {ours}", _levels(r.get("baseline")), ratio, target]


def _backends(r: dict[str, Any]) -> list[str]:
    if "vit_b16" in r or "vit" in r:
        v = r.get("vit_b16") or r["vit"]
        batch = next((key.split("_")[0] for key in v.get("onnx_int8", {}) if key.endswith("_images_per_s")), "batch32")
        speeds = f"{v.get('model', 'ViT-B/16')}: " + "; ".join(
            f"{name} "
            + _say(
                v,
                ("p50 {} ms", f"{name}.batch1_p50_ms"),
                (f"{{}} img/s at batch {batch.removeprefix('batch')}", f"{name}.{batch}_images_per_s"),
                *(
                    (f"{{}} img/s on {key.split('_')[0].removeprefix('streams')} streams", f"{name}.{key}")
                    for key in v.get(name, {})
                    if key.startswith("streams") and key.endswith("_images_per_s")
                ),
                ("{} of its precision's GEMM peak", f"{name}.{batch}_share_of_peak"),
            )
            for name in ("openvino_int8_bf16", "openvino_int8", "onnx_int8", "openvino_fp32", "onnx_fp32")
            if name in v
        )
        base = "; ".join(
            f"{name} " + _say(v, ("p50 {} ms", f"{name}.batch1_p50_ms"), ("{} img/s", f"{name}.batch32_images_per_s"))
            for name in ("torch_bf16", "torch_fp32")
            if name in v
        )
        ratio = _say(
            v,
            ("int8 p50 {}x bf16", "ratios.int8_p50_vs_torch_bf16"),
            ("{}x fp32", "ratios.int8_p50_vs_torch_fp32"),
            ("batch 32: {}x bf16", "ratios.int8_batch32_speedup_vs_torch_bf16"),
            ("OpenVINO int8 (bf16 rest) p50 {}x bf16", "ratios.openvino_int8_bf16_p50_vs_torch_bf16"),
            ("best throughput {}x ONNX int8", "ratios.openvino_int8_bf16_best_throughput_vs_onnx_int8"),
        )
        layers = _say(
            v,
            ("openvino_int8 batch 1 by layer: linear {} ms", "openvino_int8_batch1_profile.ms.linear"),
            ("{} of the int8 peak", "openvino_int8_batch1_profile.linear_share_of_int8_peak"),
            ("attention {} ms", "openvino_int8_batch1_profile.ms.attention"),
            ("rest {} ms", "openvino_int8_batch1_profile.ms.rest"),
            ("{} ms at the peak", "openvino_int8_batch1_profile.ceiling_ms"),
        )
        return [f"{speeds}; {layers}" if layers else speeds, base, ratio, _target_list(v)]
    d = r.get("demo", {})
    accuracy = ", ".join(f"{k} {v}" for k, v in d.get("accuracy", {}).items() if k.startswith(("onnx", "torch")))
    ours = f"accuracy on {_get(d, 'accuracy.n_test')} test images: {accuracy}; " + _say(
        d, ("ONNX fp32 p50 {} ms", "onnx_fp32.batch1_p50_ms"), ("{} img/s", "onnx_fp32.batch32_images_per_s")
    )
    base = _say(
        d,
        ("PyTorch fp32 {}", "accuracy.pytorch"),
        ("p50 {} ms", "torch_fp32.batch1_p50_ms"),
        ("{} img/s", "torch_fp32.batch32_images_per_s"),
    )
    return [ours, base, _say(d, ("int8 drop {}", "accuracy.int8_accuracy_drop")), _target_list(d)]


def _target_list(record: dict[str, Any]) -> str:
    """`name value (target <= bound): met` for each of a record's targets, and the machine's ceiling where known."""
    return "; ".join(
        f"{name} {t['value']} ({t['target']}): {'met' if t['met'] else 'missed'}"
        + (f", ceiling at the int8 peak {t['ceiling_at_int8_peak']}" if "ceiling_at_int8_peak" in t else "")
        for name, t in record.get("targets", {}).items()
    )


def _loader(r: dict[str, Any]) -> list[str]:
    rates = r.get("loader_images_per_s", {})
    ours = " / ".join(f"{rate:g}" for rate in rates.values()) + f" img/s with {' / '.join(rates)} workers"
    ours += _say(r, (" at {} px", "input_size"))
    base = _say(r, ("training {} img/s here", "training_images_per_s_here"))
    ratio = _say(r, ("a GPU at {} img/s", "gpu_images_per_s"), ("needs {} workers", "workers_needed_for_gpu"))
    return [ours, base, ratio, ""]


def _predict(r: dict[str, Any]) -> list[str]:
    threads = r.get("images_per_s", {})
    ours = "; ".join(f"{folder}: {rates.get('threads')} img/s" for folder, rates in threads.items())
    base = "; ".join(f"{folder}: {rates.get('dataloader')} img/s" for folder, rates in threads.items())
    ratio = "; ".join(f"{folder} {value}x" for folder, value in (r.get("threads_vs_dataloader") or {}).items())
    return [f"thread pool, {r.get('transform', '')}: {ours}", f"torch DataLoader: {base}", ratio, ">= 1x"]


def _prediction_log(r: dict[str, Any]) -> list[str]:
    ours = _say(r, ("log on: p50 {} ms", "with_log.p50_ms"), ("p95 {} ms", "with_log.p95_ms"))
    ours += _say(r, (", {} failed requests", "failed_requests"), ("{} rows dropped", "dropped_rows"))
    base = _say(r, ("log off: p50 {} ms", "without_log.p50_ms"), ("p95 {} ms", "without_log.p95_ms"))
    ratio = _say(r, ("p50 {}x", "p50_ratio"), ("median of the turns' {}x", "median_turn_p50_ratio"))
    return [
        f"c={r.get('concurrency')}, {ours}",
        base,
        ratio,
        _say(r, ("p50 <= {}x, no failed request", "target_p50_ratio")),
    ]


def _fast_decode(r: dict[str, Any]) -> list[str]:
    at = "speed.{}.jpeg_640x480.{}.total.p50_ms"
    ours = _say(r, ("fast: {} ms", at.format("demo", "fast")), ("ViT-B/16 {} ms", at.format("vit_b16", "fast")))
    base = _say(r, ("exact: {} ms", at.format("demo", "exact")), ("ViT-B/16 {} ms", at.format("vit_b16", "exact")))
    ratio = _say(
        r,
        ("demo {}x faster", "speed.demo.jpeg_640x480.fast_speedup"),
        ("ViT-B/16 {}x", "speed.vit_b16.jpeg_640x480.fast_speedup"),
        ("640x480 JPEG top-1 agreement {}", "answers.jpeg_640x480.top1_agreement"),
        ("accuracy drop {}", "answers.jpeg_640x480.accuracy_drop"),
        ("96 px PNG agreement {}", "answers.stored.top1_agreement"),
    )
    target = _say(
        r,
        ("agreement > {}", "targets.min_top1_agreement"),
        ("drop <= {}", "targets.max_accuracy_drop"),
        ("met: {}", "answers.met"),
    )
    return [f"640x480 JPEG decode + transform, {ours}", base, ratio, target]


def _distill(r: dict[str, Any]) -> list[str]:
    ratio = _say(r, ("{}x faster at batch 1", "fastest_speedup"), ("{}x the throughput", "highest_throughput_speedup"))
    return [_distill_role(r, "student"), _distill_role(r, "teacher"), ratio, "several times faster"]


def _distill_role(r: dict[str, Any], role: str) -> str:
    fastest, busiest = _get(r, f"fastest.{role}") or {}, _get(r, f"highest_throughput.{role}")
    said = f"{role} {_get(r, f'models.{role}')} on {fastest.get('backend')}: p50 {fastest.get('batch1_p50_ms')} ms"
    return said + (f"; {busiest['images_per_s']} img/s batched on {busiest['backend']}" if busiest else "")


def _speed_targets(r: dict[str, Any]) -> str:
    return _say(r, ("MFU {}", "target_mfu"), ("{}x", "target_speedup"))


HEADLINES: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "train_throughput": _train,
    "eval_throughput": _eval,
    "app_latency": _app,
    "serve_load": _serve,
    "backends": _backends,
    "loader_throughput": _loader,
    "predict_throughput": _predict,
    "prediction_log": _prediction_log,
    "fast_decode": _fast_decode,
    "distill": _distill,
}


def load_results(directory: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    """Every result, in the order of HEADLINES (training first, serving after), then by name."""
    records = [json.loads(path.read_text(encoding="utf-8")) for path in directory.glob("*.json")]
    order = [*HEADLINES, DEMO]
    return sorted(records, key=lambda r: (order.index(r["result"]["benchmark"]), r["name"]))


def _provenance(record: dict[str, Any]) -> str:
    if record.get("date"):
        machine = record.get("machine", {})
        where = f"{machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores"
        if machine.get("cpu_features"):
            where += f" ({', '.join(machine['cpu_features'])})"
        if "load_average_1min" in machine:
            where += f", load average {machine['load_average_1min']} at the end of the run"
        return f"measured {record['date']} at commit `{record.get('commit')}` on {where}"
    return f"{record['source']} (machine: {record.get('machine', {}).get('description', 'not recorded')})"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def summary_table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| benchmark | ours | baseline in the same run | ratio | target | figures from |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for record in records:
        headline = HEADLINES[record["result"]["benchmark"]](record["result"])
        first = f"[{record['name']}](#{record['name']})"  # the command and its provenance are in its section
        measured = "measured " + record["date"][:10] if record.get("date") else "carried over"
        lines.append("| " + " | ".join(_cell(c) for c in [first, *headline, measured]) + " |")
    return "\n".join(lines)


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, json.dumps(value)


def details(records: list[dict[str, Any]]) -> str:
    sections = []
    for record in records:
        rows = "\n".join(f"    | `{key}` | {_cell(value)} |" for key, value in _flatten(record["result"]))
        sections.append(
            f"### {record['name']}\n\n`{record['command']}`: {_cell(_provenance(record))}.\n\n"
            f'??? note "All figures of `{record["name"]}.json`"\n\n    | key | value |\n    | --- | --- |\n{rows}\n'
        )
    return "\n".join(sections)


def demo_results(records: list[dict[str, Any]]) -> str:
    """The demo pipeline's metrics, as `python -m benchmarks.demo_results` last snapshotted them."""
    demo = next((r for r in records if r["result"]["benchmark"] == DEMO), None)
    if demo is None:
        return "No snapshot yet: run `make demo`, then `python -m benchmarks.demo_results`."
    test, train, export = (demo["result"][name] for name in ("test", "train", "export"))
    level = round(test["confidence_level"] * 100)
    return "\n".join(
        [
            f"Taken {demo['date'][:10]} at commit `{demo['commit']}` from {demo['source']}.",
            "",
            "| metric | value |",
            "| --- | --- |",
            f"| best val accuracy (epoch {train['best_epoch']} of {train['epochs']}) | {train['best_val_acc']:.3f} |",
            f"| test accuracy ({level}% CI) | **{test['accuracy']:.3f}** ({test['accuracy_ci_low']:.3f}-"
            f"{test['accuracy_ci_high']:.3f}), n = {test['n_test']:,} |",
            f"| F1 weighted / macro | {test['f1_weighted']:.3f} / {test['f1_macro']:.3f} |",
            f"| top-5 accuracy | {test['top5_accuracy']:.3f} |",
            f"| ECE uncalibrated -> calibrated (T = {test['temperature']:.2f}) | {test['ece_uncalibrated']:.3f} -> "
            f"{test['ece']:.3f} |",
            f"| train stage | {train['wall_time_s']:.0f} s at {train['train_images_per_s']:.0f} images/s, "
            f"{train['precision']}, {train['trainable_params']:,} trainable parameters |",
            f"| export: ONNX fp32 top-1 agreement, max logit diff | {export['onnx']['top1_agreement']:.3f}, "
            f"{export['onnx']['max_abs_logit_diff']:g} |",
            f"| export: int8 accuracy, top-1 agreement, drop | {export['onnx_int8']['accuracy']:.4f}, "
            f"{export['onnx_int8']['top1_agreement']:.4f}, {export['int8_accuracy_drop']:.4f} |",
            f"| PyTorch fp32 accuracy (export parity run) | {export['pytorch_accuracy']:.4f} |",
        ]
    )


def render(results: Path = RESULTS_DIR, template: Path = TEMPLATE) -> str:
    records = load_results(results)
    benchmarks = [record for record in records if record["result"]["benchmark"] != DEMO]
    page = template.read_text(encoding="utf-8")
    for marker, text in {
        "{{ summary }}": summary_table(benchmarks),
        "{{ demo_results }}": demo_results(records),
        "{{ details }}": details(benchmarks),
    }.items():
        page = page.replace(marker, text)
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=PAGE, help="the page to write (default docs/benchmarks.md)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when the page is stale")
    args = parser.parse_args(argv)
    return write_or_check(args.output, render(), "python -m benchmarks.render_docs", args.check)


if __name__ == "__main__":
    sys.exit(main())
