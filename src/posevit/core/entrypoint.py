"""What every entry point shares: logging, clean failures, atomic JSON outputs."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from posevit.core.errors import PosevitError

log = logging.getLogger("posevit")


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a PosevitError ends it with its message and exit code 2."""
    setup_logging()
    try:
        main()
    except PosevitError as exc:
        log.error("%s", exc)
        sys.exit(2)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """Write JSON atomically (a killed stage never leaves half a metrics file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    partial.replace(path)
