"""`train.distill.teacher` as a local bundle folder, fetched when it names a registry model or a DVC revision.

Training sits below the registry (train/ never imports publish/ or infer/), so the entry points that train (the
train stage, `python -m posevit.sweep`) fetch the teacher here, the way `posevit serve --model` fetches a model,
and hand train() the folder (`TrainPaths.teacher`).
"""

from __future__ import annotations

from pathlib import Path

from posevit.core.config import DistillConfig
from posevit.core.errors import ConfigError, PosevitError
from posevit.infer.model_source import resolve


def fetch_teacher(distill: DistillConfig | None) -> Path | None:
    """The fetched teacher's bundle folder; None when there is nothing to fetch (off, alpha 0, or a folder)."""
    if distill is None or distill.alpha == 0 or not distill.fetched:
        return None
    try:
        return resolve(distill.teacher, "torch").bundle_dir
    except PosevitError as exc:
        raise ConfigError(f"train.distill.teacher = {distill.teacher!r}: {exc}") from None
