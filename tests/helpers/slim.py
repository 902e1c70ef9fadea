"""Run a process as if only requirements/serve.txt were installed (the serving image's packages).

A `sitecustomize` on PYTHONPATH refuses every import whose distribution is not in serve.txt
(nor posevit itself): `import torch` fails as it would in the image. Standard-library modules
belong to no distribution and pass.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tests.helpers import ROOT

SERVE_REQUIREMENTS = ROOT / "requirements" / "serve.txt"

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
