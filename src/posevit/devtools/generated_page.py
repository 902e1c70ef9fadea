"""Pages of the docs that a command generates (the configuration reference, the benchmarks page): written, or
checked against what is committed so a test and `--check` can say which command makes them current."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(output: Path, page: str, command: str, check: bool) -> int:
    """Write `page` to `output`, or with `check` only compare: 1 (and how to fix it) when the file differs."""
    if check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != page:
            print(f"{output} is stale: run `{command}`", file=sys.stderr)
            return 1
        return 0
    output.write_text(page, encoding="utf-8")
    print(f"wrote {output}")
    return 0
