"""A model ready to load: where its bundle (and exports) lie on disk, its version, and where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posevit.core.evaluation_record import TestMetrics


@dataclass(frozen=True)
class ServedModel:
    bundle_dir: Path
    version: str  # content hash of the bundle, as in the registry and the report
    source: str  # where it came from, for the model card
    metrics: TestMetrics | None  # test metrics that came with it, if any
    exports_dir: Path | None = None  # its ONNX exports, when they came with it
