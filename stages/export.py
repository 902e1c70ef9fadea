"""DVC stage `export`: models/ -> exports/ (ONNX fp32 + int8, input spec) + metrics/export.json (parity)."""

from posevit.core.config import load_params
from posevit.core.entrypoint import run_stage, write_json
from posevit.core.paths import EXPORT_METRICS
from posevit.export.run import export


def main() -> None:
    metrics = export(load_params().export)
    write_json(EXPORT_METRICS, metrics)
    line = f"ONNX fp32: top-1 agreement {metrics['onnx']['top1_agreement']:.4f}, max |logit diff| "
    line += f"{metrics['onnx']['max_abs_logit_diff']:.2e}, accuracy {metrics['onnx']['accuracy']:.4f}"
    if "onnx_int8" in metrics:
        line += f"; int8 accuracy {metrics['onnx_int8']['accuracy']:.4f} (drop {metrics['int8_accuracy_drop']:+.4f})"
    print(line + f" vs PyTorch {metrics['pytorch_accuracy']:.4f}, n={metrics['n_test']}")


if __name__ == "__main__":
    run_stage(main)
