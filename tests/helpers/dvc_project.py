"""A throwaway git + DVC copy of this project, to run the real `dvc` commands against."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from filelock import FileLock

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
        self.run("git", "commit", "-q", "--allow-empty", "-m", message)

    def lock_md5(self, stage: str, out: str) -> str:
        lock = yaml.safe_load((self.root / "dvc.lock").read_text())
        return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == out)

    def params(self) -> dict:
        return yaml.safe_load((self.root / "params.yaml").read_text())

    @contextmanager
    def inside(self) -> Iterator[None]:
        """This process in the project's root meanwhile, as a stage runs (params.yaml and data/ are read from there)."""
        cwd = os.getcwd()
        os.chdir(self.root)
        try:
            yield
        finally:
            os.chdir(cwd)


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


def _shared(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A project built once per test run, by whichever pytest-xdist worker asks first (xdist's documented
    pattern: the workers' temp folders share a parent, and a file lock makes the others wait for the first)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    base, done = root / "shared" / name, root / "shared" / f"{name}.done"
    base.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base) + ".lock"):
        if not done.exists():
            shutil.rmtree(base, ignore_errors=True)
            build(base)
            done.touch()
    return base


def _clone(base: Path, destination: Path, *overrides: str) -> DvcProject:
    """A private copy of a shared project (git history, DVC cache and outputs), params.yaml recomposed."""
    shutil.copytree(base, destination, symlinks=True)
    project = DvcProject(destination)
    project.run(sys.executable, "-m", "posevit.core.config", *overrides)
    project.commit(f"params: {' '.join(overrides)}")
    return project


def preprocessed_smoke_project(
    tmp_path_factory: pytest.TempPathFactory, destination: Path, *overrides: str
) -> DvcProject:
    """A copy with `experiment=smoke` + `overrides` whose preprocess stage has run (once for the whole test run:
    the files that need the demo splits start from the same reproduced stage instead of drawing it again)."""

    def build(base: Path) -> None:
        project = copy_project(base, "experiment=smoke")
        project.dvc("repro", "preprocess")
        project.commit("preprocessed")

    return _clone(_shared(tmp_path_factory, "smoke-preprocessed", build), destination, "experiment=smoke", *overrides)


REPRODUCED_SMOKE = ("experiment=smoke", "train.epochs=2")


def reproduced_smoke_project(
    tmp_path_factory: pytest.TempPathFactory, destination: Path, *overrides: str
) -> DvcProject:
    """A copy with `REPRODUCED_SMOKE` + `overrides` after a whole `dvc repro` (built once for the test run; a copy
    whose overrides touch a stage's params reruns that stage at its next `dvc repro`)."""

    def build(base: Path) -> None:
        project = preprocessed_smoke_project(tmp_path_factory, base, *REPRODUCED_SMOKE[1:])
        project.dvc("repro")
        project.commit("reproduced")

    return _clone(_shared(tmp_path_factory, "smoke-reproduced", build), destination, *REPRODUCED_SMOKE, *overrides)
