"""An exported model run by ONNX Runtime: (N, 3, H, W) float32 pixels -> (N, classes) logits.

ONNX Runtime comes with the serving extra (`pip install posevit[serve]`); it is imported only here, and
only when an ONNX backend is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posevit.core.errors import ConfigError


def _runtime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("the ONNX backends need ONNX Runtime: pip install 'posevit[serve]'") from None
    return ort


def check_onnx_device(device: str, setting: str = "--device") -> None:
    """Stop before loading anything when ONNX Runtime cannot run on `device` here."""
    if device.startswith("cuda"):
        available = _runtime().get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise ConfigError(
                f"{setting}={device} needs ONNX Runtime's CUDA provider (pip install onnxruntime-gpu) and this "
                f"one has {', '.join(available)}: use {setting} cpu"
            )
    elif device != "cpu":
        raise ConfigError(f"{setting}={device}: the ONNX backends run on cpu or cuda[:N]")


class OnnxModel:
    def __init__(self, path: Path, device: str = "cpu", spinning: bool = True) -> None:
        ort = _runtime()
        check_onnx_device(device)
        if not Path(path).is_file():
            raise ConfigError(f"{path} not found: export the model first (`dvc repro export`)")
        providers: list[str | tuple[str, dict[str, str]]] = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.partition(":")[2] or "0"}))
        self.path = Path(path)
        options = ort.SessionOptions()
        if not spinning:  # idle threads sleep at once instead of spinning (fair when timed beside PyTorch)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        output = self.session.run(None, {self.input_name: np.ascontiguousarray(pixels, dtype=np.float32)})[0]
        return np.asarray(output, dtype=np.float32)
