"""The exporters' and quantizers' chatter (torch.onnx, ONNX Runtime's quantizer, OpenVINO, NNCF) into a log file.

They print from Python (logging, warnings, rich progress bars) and from C++, to the process's stdout and
stderr: swapping file descriptors 1 and 2 catches the C++ side and every stream opened on them; swapping
`sys.stdout` and `sys.stderr` too catches Python writers that look them up at each write (rich's console)
even where those are not the descriptors (a test's capture). The stage's own lines are written between these
sections, so the terminal shows what a user reads.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path


@contextmanager
def output_into(log_file: Path, title: str) -> Iterator[None]:
    """Everything written to stdout and stderr inside the block is appended to `log_file`, under `title`."""
    sys.stdout.flush()
    sys.stderr.flush()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(1), os.dup(2)
    with log_file.open("a", encoding="utf-8", buffering=1) as log:
        log.write(f"==> {title}\n")
        log.flush()
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with redirect_stdout(log), redirect_stderr(log):
                yield
        finally:
            log.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
