"""DVC stage entry points (`python -m stages.<name>`), one per stage of dvc.yaml.

Importing this package first checks that the interpreter has posevit installed: DVC runs a
stage's `python` from PATH, and a system Python without the project's environment would
otherwise fail deep inside the stage with a traceback.
"""

import importlib.util
import sys

if importlib.util.find_spec("posevit") is None:
    sys.exit(
        f"error: {sys.executable} (the `python` on PATH, which DVC runs stages with) does not have posevit "
        "installed: run `make setup`, then `source .venv/bin/activate` before `dvc repro` / `dvc exp run`"
    )
