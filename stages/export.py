"""DVC stage `export`: models/ -> exports/ (ONNX fp32 + dynamic int8, OpenVINO IR fp32 + static int8, input spec)
+ metrics/export.json (parity on the test split) + metrics/export.log (what the exporters and NNCF print)."""

from posevit.core.config import load_params
from posevit.core.entrypoint import run_stage, write_json
from posevit.core.paths import EXPORT_LOG, EXPORT_METRICS, EXPORTS_DIR
from posevit.export.run import export, summary


def main() -> None:
    cfg = load_params().export
    metrics = export(cfg)
    write_json(EXPORT_METRICS, metrics)
    files = sorted(path.relative_to(EXPORTS_DIR).as_posix() for path in EXPORTS_DIR.rglob("*") if path.is_file())
    print(f"wrote {EXPORTS_DIR}/: {', '.join(files)}")
    print("\n".join(summary(metrics)))
    print(
        f"gates passed: each fp32 export's top-1 agreement >= {cfg.min_top1_agreement}, each int8 export's "
        f"accuracy drop <= {cfg.max_int8_accuracy_drop}; the exporters' and NNCF's own output: {EXPORT_LOG}"
    )


if __name__ == "__main__":
    run_stage(main)
