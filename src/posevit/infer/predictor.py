"""Inference on a bundle: the evaluation transform, batched forward passes, calibrated probabilities.

`Predictor` is what the server, the page and `posevit predict` hold; `infer.backends.load_predictor`
picks the backend. The ONNX and OpenVINO backends need only their runtime, PIL and NumPy (the serving install
has no torch); the torch backend (`infer.torch_predictor`, a subclass) alone draws heat maps.
The server batches through `forward`; `predict` is one image alone (the replaced app's path, which
`benchmarks/app_latency.py` times).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from posevit.core.config import Backend, Precision
from posevit.core.cores import usable_cores
from posevit.core.errors import ConfigError
from posevit.core.paths import EXPORTS_DIR, IR_BY_BACKEND, ONNX_BY_BACKEND
from posevit.models.bundle_config import BundleConfig
from posevit.models.onnx_runtime import OnnxModel
from posevit.models.openvino_runtime import HintPrecision, OpenVinoModel, StreamedModel, fastest_precision
from posevit.models.preprocess import EvalPreprocess

DISPLAY_SIZE = 288


@dataclass(frozen=True)
class Prediction:
    """One image's calibrated probabilities: what `predict` returns, and what the server's batches answer."""

    probabilities: dict[str, float]  # every label, in the bundle's order
    seconds: float  # the transform and forward pass (`predict`), or the wait for a batch and its pass (the server)

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda item: item[1], reverse=True)[:k]


class Predictor(ABC):
    """One bundle on one device and backend: images -> pixels -> calibrated probabilities."""

    backend: Backend
    precision: str  # what `forward` runs in, for the page and the API
    explains = False  # whether `heat_map` works (it needs gradients: the torch backend)
    streams = 1  # forward passes it can run at once (the server may dispatch that many batches concurrently)

    def __init__(self, config: BundleConfig, device: str) -> None:
        self.config = config
        self.labels = config.labels
        self.model_name = config.model_name
        self.temperature = config.temperature or 1.0  # calibrated on the validation split
        self.device = device
        self.precision_timings: dict[str, float] = {}  # ms of one image per precision, where load chose by timing

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the model's input."""
        _, height, width = self.config.data_config["input_size"]
        return height, width

    @abstractmethod
    def preprocess(self, image: Image.Image) -> np.ndarray:
        """The eval transform: (C, H, W) float32 pixels (cheap, so it runs in request threads)."""

    @abstractmethod
    def forward(self, pixels: np.ndarray) -> np.ndarray:
        """(N, C, H, W) pixels -> (N, classes) calibrated probabilities, one forward pass."""

    def predict(self, image: Image.Image) -> Prediction:
        """One image alone, timed."""
        start = time.perf_counter()
        probabilities = self.forward(self.preprocess(image)[None])[0].tolist()
        return Prediction(dict(zip(self.labels, probabilities, strict=True)), time.perf_counter() - start)

    @property
    def stream_options(self) -> tuple[int, ...]:
        """The stream counts it can run (`serve.streams` auto times each): here one, as one pass uses every core."""
        return (self.streams,)

    def use_streams(self, streams: int) -> None:
        """Run `streams` forward passes at once from now on (compiled afresh: the next pass is cold)."""
        raise ConfigError(
            f"serve.streams = {streams}: backend {self.backend} runs one forward pass at a time (it uses every core); "
            "streams are for backends openvino and openvino-int8: set serve.streams to auto or 1"
        )

    def lone_passes_on_every_core(self) -> None:
        """Once streams are chosen: a pass with no other in flight may run on every core (one stream: it does)."""
        return None

    def heat_map(self, image: Image.Image, label: str | None = None) -> np.ndarray:
        raise ConfigError(f"heat maps need gradients, which backend {self.backend} has not: use backend torch")

    def overlay(self, image: Image.Image, heat: np.ndarray, alpha: float = 0.5) -> Image.Image:
        """The heat map in colour over the same centre crop the model saw."""
        from matplotlib import colormaps

        size = heat.shape[::-1]
        crop = _center_crop_like(image.convert("RGB"), self.config.data_config["crop_pct"], size)
        colour = (colormaps["inferno"](heat)[..., :3] * 255).astype(np.uint8)
        blended = Image.blend(crop, Image.fromarray(colour), alpha)
        scale = max(1, DISPLAY_SIZE // max(size))  # small inputs (the demo's 96 px) are shown larger
        return blended.resize((size[0] * scale, size[1] * scale), Image.Resampling.BICUBIC) if scale > 1 else blended


class ExportPredictor(Predictor):
    """A file of the export stage run without torch: the bundle's eval transform in NumPy and PIL, and logits."""

    def __init__(self, config: BundleConfig, backend: Backend, device: str) -> None:
        super().__init__(config, device)
        self.backend = backend
        self.transform = EvalPreprocess(config.data_config)

    @abstractmethod
    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """(N, C, H, W) pixels -> (N, classes) logits."""

    def preprocess(self, image: Image.Image) -> np.ndarray:
        return self.transform(image)

    def forward(self, pixels: np.ndarray) -> np.ndarray:
        scaled = self.logits(pixels) / self.temperature
        exp = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
        return exp / exp.sum(axis=-1, keepdims=True)


class OnnxPredictor(ExportPredictor):
    """The export stage's ONNX file (fp32 or dynamic int8) in ONNX Runtime; no torch anywhere."""

    def __init__(self, config: BundleConfig, exports_dir: Path, backend: Backend, device: str = "cpu") -> None:
        super().__init__(config, backend, device)
        self.onnx = OnnxModel(exports_dir / ONNX_BY_BACKEND[backend].name, device)
        self.precision = "int8 (ONNX Runtime)" if backend == "onnx-int8" else "fp32 (ONNX Runtime)"

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.onnx.logits(pixels)


class OpenVinoPredictor(ExportPredictor):
    """The export stage's OpenVINO IR (fp32, or NNCF's static int8) in OpenVINO; no torch anywhere.

    The precision hint is always set: `auto` is f32 for the fp32 IR (the plugin would otherwise run it in bf16
    on CPUs that have bf16); for the int8 IR on a CPU with native bf16 it is whichever of f32 and bf16 (for what
    stays unquantized: LayerNorm, Softmax, GELU) runs one image faster here, timed at load, else f32.
    Static int8 fixes every scale at export, so an image's answer does not depend on the rest of its batch.
    `streams` > 1 lets that many `forward` calls compute at once, the cores split between them (on the CPU it
    offers 1, 2, 4, ... streams up to the cores this process may use).
    """

    def __init__(
        self,
        config: BundleConfig,
        exports_dir: Path,
        backend: Backend,
        device: str = "cpu",
        precision: Precision = "auto",
        streams: int = 1,
    ) -> None:
        super().__init__(config, backend, device)
        int8 = backend == "openvino-int8"
        xml = exports_dir / IR_BY_BACKEND[backend].relative_to(EXPORTS_DIR)
        if precision == "auto" and int8 and device == "cpu":
            shape = tuple(config.data_config["input_size"])
            model, self.precision_timings = fastest_precision(xml, device, 1, shape)
        else:
            hint: HintPrecision = "bf16" if precision == "bf16" else "f32"
            model = OpenVinoModel(xml, hint, device)
        self.openvino = StreamedModel(model)
        if streams > 1:
            self.use_streams(streams)
        self._describe()

    def _describe(self) -> None:
        ran = self.openvino.describe()
        self.precision = f"int8, the rest {ran}" if self.backend == "openvino-int8" else ran
        self.streams = self.openvino.streams

    @property
    def stream_options(self) -> tuple[int, ...]:
        if self.openvino.model.device != "CPU":
            return (self.streams,)
        cores = usable_cores()
        return tuple(sorted({1, cores, *(2**power for power in range(cores.bit_length()) if 2**power <= cores)}))

    def use_streams(self, streams: int) -> None:
        self.openvino.use(streams)
        self._describe()

    def lone_passes_on_every_core(self) -> None:
        self.openvino.lone_passes_on_every_core()
        self._describe()

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        return self.openvino.logits(pixels)


def _center_crop_like(image: Image.Image, crop_pct: float, size: tuple[int, int]) -> Image.Image:
    """The region of `image` the evaluation transform keeps (resize shorter side, centre crop), at `size`."""
    width, height = image.size
    side = min(width, height) * crop_pct
    left, top = (width - side) / 2, (height - side) / 2
    return image.resize(size, Image.Resampling.BICUBIC, box=(left, top, left + side, top + side))
