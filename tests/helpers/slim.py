"""The serving install (requirements/serve.txt: posevit[serve], no torch), for real.

`serving_venv()` is the real one: `.venv-serve`, built from the serving lock alone by `make serve-venv`
(once; `make test` builds it first, and a test run without make builds it here). Its processes see no
package of the full stack: they run with `serving_env()`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.helpers import ROOT

SERVE_REQUIREMENTS = ROOT / "requirements" / "serve.txt"
SERVING_VENV = ROOT / ".venv-serve"


def serving_venv() -> Path:
    """The serving install's venv (its bin/ has `python` and `posevit`), built or brought up to date by make."""
    result = subprocess.run(["make", "-s", "serve-venv"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"make serve-venv failed:\n{result.stdout}\n{result.stderr}"
    return SERVING_VENV


def serving_env() -> dict[str, str]:
    """os.environ for a process of the serving venv: no other venv on PATH, nothing on PYTHONPATH (set empty,
    so that it also wins when merged over os.environ)."""
    paths = [path for path in os.environ.get("PATH", "").split(os.pathsep) if not Path(path, "activate").is_file()]
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(SERVING_VENV / "bin"), *paths]),
        "PYTHONPATH": "",
        "VIRTUAL_ENV": str(SERVING_VENV),
    }
