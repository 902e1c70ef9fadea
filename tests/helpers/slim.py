"""The serving install (requirements/serve.txt: posevit[serve], no torch), for real or as a fast stand-in.

`serving_venv()` is the real one: `.venv-serve`, built from the serving lock alone by `make serve-venv`
(once; `make test` builds it first, and a test run without make builds it here). Its processes see no
package of the full stack: they run with `serving_env()`.

`serve_only_env()` is the quick stand-in for a process of the full venv: a `sitecustomize` on PYTHONPATH
refuses every import whose distribution is not in serve.txt (nor posevit itself), so `import torch`
fails as it would in the image. Standard-library modules belong to no distribution and pass.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tests.helpers import ROOT

SERVE_REQUIREMENTS = ROOT / "requirements" / "serve.txt"
SERVING_VENV = ROOT / ".venv-serve"

SITECUSTOMIZE = """
import importlib.abc, importlib.metadata, os, re, sys

_allowed = set(os.environ["POSEVIT_ONLY_DISTRIBUTIONS"].split(","))
_owners = importlib.metadata.packages_distributions()


def _normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()


class _OnlyServeRequirements(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        owners = _owners.get(name.partition(".")[0])
        if owners and not any(_normal(owner) in _allowed for owner in owners):
            raise ModuleNotFoundError(f"No module named {name!r} (not in requirements/serve.txt)", name=name)
        return None


sys.meta_path.insert(0, _OnlyServeRequirements())
"""


def serve_distributions() -> list[str]:
    """The distributions serve.txt pins, normalised, and posevit."""
    pinned = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", SERVE_REQUIREMENTS.read_text(), re.M)
    return sorted({re.sub(r"[-_.]+", "-", name).lower() for name in pinned} | {"posevit"})


def serve_only_env(directory: Path) -> dict[str, str]:
    """Environment variables that make a Python process see only the serving image's packages."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, "POSEVIT_ONLY_DISTRIBUTIONS": ",".join(serve_distributions())}


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
