"""An exported OpenVINO IR run by OpenVINO's runtime: (N, 3, H, W) float32 pixels -> (N, classes) logits.

OpenVINO comes with the serving extra (`pip install posevit[serve]`); it is imported only here, and only
when an OpenVINO backend (or the export stage) asks for it.

Two settings are always given, never left to the plugin: the threads (the cores this process may use, not
the machine's) and the inference precision. OpenVINO's CPU plugin runs an fp32 model in bf16 on CPUs with
native bf16 unless INFERENCE_PRECISION_HINT says f32, so "fp32" would otherwise mean whatever the CPU is.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from posevit.core.cores import usable_cores
from posevit.core.errors import ConfigError

HintPrecision = Literal["f32", "bf16"]  # OpenVINO's names for what the unquantized parts compute in
PROJECT_NAMES = {"f32": "fp32", "bf16": "bf16"}  # posevit's (the torch backend's) names for the same


def _runtime() -> Any:
    try:
        import openvino as ov
    except ImportError:
        raise ConfigError("the OpenVINO backends need OpenVINO: pip install 'posevit[serve]'") from None
    return ov


def openvino_device(device: str, setting: str = "--device") -> str:
    """posevit's device name as OpenVINO's (cpu -> CPU, gpu[.N] -> GPU[.N]), or a ConfigError saying what runs here."""
    if device == "cpu":
        return "CPU"
    available = list(_runtime().Core().available_devices)
    if device.startswith("gpu"):
        wanted = device.upper()
        gpus = [name for name in available if name.startswith("GPU")]
        if wanted in gpus or (wanted == "GPU" and gpus):
            return wanted if wanted in gpus else gpus[0]
        raise ConfigError(
            f"{setting}={device}: OpenVINO lists {', '.join(available)} here (no {wanted}): use {setting} cpu"
        )
    raise ConfigError(
        f"{setting}={device}: the OpenVINO backends run on cpu or, where OpenVINO lists one, an Intel gpu "
        f"(this one lists {', '.join(available)}): use {setting} cpu"
    )


def cpu_has_native_bf16() -> bool:
    """True where OpenVINO's CPU plugin has native bf16 kernels (AVX-512 BF16 or AMX): bf16 then pays."""
    return "BF16" in _runtime().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoModel:
    """One compiled IR with a pool of infer requests: `logits` may be called from several threads at once, each
    call on its own request (with `streams` > 1 they compute in parallel, one stream each)."""

    def __init__(
        self,
        path: Path,
        precision: HintPrecision,
        device: str = "cpu",
        threads: int | None = None,
        streams: int = 1,
    ) -> None:
        ov = _runtime()
        if not Path(path).is_file():
            raise ConfigError(f"{path} not found: export the model first (`dvc repro export`)")
        self.path = Path(path)
        self.device_name = device  # posevit's name (cpu, gpu.0), as given
        self.device = openvino_device(device)
        if precision == "bf16" and self.device == "CPU" and not cpu_has_native_bf16():
            raise ConfigError(
                "precision bf16 on this CPU: it has no native bf16 (OpenVINO would emulate it, slower than f32); "
                "use precision fp32 or auto"
            )
        self.threads = threads or usable_cores()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": precision}
        if self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = self.threads
        # LATENCY: one stream on all the threads; THROUGHPUT: `streams` requests compute at once, each on its share.
        config["PERFORMANCE_HINT"] = "LATENCY" if streams == 1 else "THROUGHPUT"
        if streams > 1:
            config["NUM_STREAMS"] = streams
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(self.path), self.device, config)
        # Read back from the compiled model: what it will run in, not what was asked.
        self.precision: HintPrecision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.streams = int(self.compiled.get_property("NUM_STREAMS"))
        self.requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for _ in range(max(1, self.streams)):
            self.requests.put(self.compiled.create_infer_request())

    @contextmanager
    def _request(self) -> Iterator[Any]:
        request = self.requests.get()  # waits while every request is busy
        try:
            yield request
        finally:
            self.requests.put(request)

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        with self._request() as request:
            request.infer({0: np.ascontiguousarray(pixels, dtype=np.float32)})
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the request is reused

    def describe(self, note: str = "") -> str:
        """What ran, for the model card: precision hint, device, threads and streams as compiled (and `note`)."""
        threads = f", {self.threads} threads" if self.device == "CPU" else ""
        streams = f"{self.streams} stream{'s' * (self.streams > 1)}"
        return f"{PROJECT_NAMES[self.precision]} (OpenVINO {self.device}{threads}, {streams}{note})"


def fastest_precision(
    path: Path, device: str, streams: int, input_shape: tuple[int, ...], rounds: int = 5
) -> tuple[OpenVinoModel, dict[str, float]]:
    """The IR compiled with each precision hint the CPU runs natively (f32, and bf16 where native), timed in turns
    on one image: the faster one and each one's median ms. Which is faster depends on the CPU (on one Zen 4 the
    int8 model's bf16 rest is faster, on another slower at batch 1), so it is measured, not assumed."""
    candidates: list[HintPrecision] = ["f32", "bf16"] if cpu_has_native_bf16() else ["f32"]
    models = {hint: OpenVinoModel(path, hint, device, streams=streams) for hint in candidates}
    if len(models) == 1:
        return models["f32"], {}
    pixels = np.zeros((1, *input_shape), np.float32)
    times: dict[HintPrecision, list[float]] = {hint: [] for hint in models}
    for round_ in range(rounds + 1):
        for hint, model in models.items():
            started = time.perf_counter()
            model.logits(pixels)
            if round_:  # the first pass of each allocates and picks kernels
                times[hint].append(time.perf_counter() - started)
    medians: dict[HintPrecision, float] = {
        hint: round(float(np.median(values)) * 1000, 2) for hint, values in times.items()
    }
    return models[min(medians, key=medians.__getitem__)], {str(hint): ms for hint, ms in medians.items()}


class StreamedModel:
    """The IR as a server runs it: compiled at the stream count chosen (`use`), and kept at one stream as well.
    With several streams a lone pass would get one stream's share of the cores (ViT-B/16 int8 on 2 cores: 110 ms
    against 68 ms on both), so once `lone_passes_on_every_core` is on, a pass that finds no other in flight runs
    on the one-stream model and the rest on the streams: low load keeps batch 1's latency, full load the streams'
    images per second (a pass that starts while a lone one runs shares the cores with it for that while)."""

    def __init__(self, one_stream: OpenVinoModel) -> None:
        self.one_stream = self.model = one_stream
        self.lone_passes = False  # off while the streams are timed: every pass on `model` then
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def streams(self) -> int:
        return self.model.streams

    def use(self, streams: int) -> None:
        """Run on `streams` streams from now on (compiled afresh unless 1), lone passes off."""
        self.lone_passes = False
        one = self.one_stream
        self.model = (
            one if streams == 1 else OpenVinoModel(one.path, one.precision, one.device_name, one.threads, streams)
        )

    def lone_passes_on_every_core(self) -> None:
        self.lone_passes = self.model.streams > 1

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        with self._lock:
            model = self.one_stream if self.lone_passes and self._in_flight == 0 else self.model
            self._in_flight += 1
        try:
            return model.logits(pixels)
        finally:
            with self._lock:
                self._in_flight -= 1

    def describe(self) -> str:
        return self.model.describe(f"; a pass alone on {self.one_stream.threads} threads" if self.lone_passes else "")
