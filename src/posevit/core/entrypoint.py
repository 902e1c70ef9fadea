"""What every entry point shares: logging, clean failures, atomic JSON outputs.

A command (`posevit serve`, `predict`, `params`) reports a user error one way: one line `error: ...` on
stderr and exit status 2 (`fail`, `run_command`, and `CommandParser` for bad flags); a DVC stage logs it
(`run_stage`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from posevit.core.errors import PosevitError

log = logging.getLogger("posevit")


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


USER_ERROR = 2  # the exit status of a bad flag, setting, input or model: what argparse uses too


def one_line(message: str) -> str:
    """A message of several lines (a list of bad keys) as one: `a: b; c`."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    joined = lines[0] if lines else ""
    for line in lines[1:]:
        joined += (" " if joined.endswith(":") else "; ") + line
    return joined


def fail(message: str) -> NoReturn:
    """Stop the command: `error: <message>` on one line, exit 2."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(USER_ERROR)


def run_command(main: Callable[[], int]) -> int:
    """Run a command's body; a PosevitError (a bad setting, input or model) ends it through `fail`."""
    try:
        return main()
    except PosevitError as exc:
        fail(str(exc))


class CommandParser(argparse.ArgumentParser):
    """argparse whose own errors (an unknown flag, a missing argument) read like every other user error."""

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see {self.prog} --help)")


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
