"""A throwaway git + DVC copy of this project, to run the real `dvc` commands against."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.helpers import ROOT


class DvcProject:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            # Stage commands say `python`: make it this interpreter.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "posevit tests",
            "GIT_AUTHOR_EMAIL": "tests@posevit.invalid",
            "GIT_COMMITTER_NAME": "posevit tests",
            "GIT_COMMITTER_EMAIL": "tests@posevit.invalid",
        }

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(command, cwd=self.root, env=self.env, capture_output=True, text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "dvc", *args, check=check)

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-qm", message)

    def lock_md5(self, stage: str, out: str) -> str:
        lock = yaml.safe_load((self.root / "dvc.lock").read_text())
        return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == out)

    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())


def copy_project(destination: Path, *overrides: str) -> DvcProject:
    """Copy the project's tracked and unignored files, compose params.yaml with `overrides`, commit."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    project = DvcProject(destination)
    project.run("git", "init", "-q", "-b", "main")
    project.run(sys.executable, "-m", "posevit.core.config", *overrides)
    project.commit("copy of posevit")
    return project
