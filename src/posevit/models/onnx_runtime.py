"""An exported model run by ONNX Runtime: (N, 3, H, W) float32 pixels -> (N, classes) logits.

ONNX Runtime is an optional extra (`pip install posevit[onnx]`); it is imported only here, and
only when an ONNX backend is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from posevit.core.errors import ConfigError


class OnnxModel:
    def __init__(self, path: Path, device: str = "cpu", spinning: bool = True) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError("the ONNX backends need ONNX Runtime: pip install 'posevit[onnx]'") from None
        if not Path(path).is_file():
            raise ConfigError(f"{path} not found: export the model first (`dvc repro export`)")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        self.path = Path(path)
        options = ort.SessionOptions()
        if not spinning:  # idle threads sleep at once instead of spinning (fair when timed beside PyTorch)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        output = self.session.run(None, {self.input_name: np.ascontiguousarray(pixels, dtype=np.float32)})[0]
        return np.asarray(output, dtype=np.float32)
