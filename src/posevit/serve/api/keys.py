"""API keys: from POSEVIT_API_KEYS (comma-separated) and/or a key file (one per line, # comments)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from posevit.core.errors import ConfigError


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self._keys = [key.encode() for key in keys if key]

    @classmethod
    def load(cls, key_file: str | None, environ: dict[str, str] | None = None) -> ApiKeys:
        environ = dict(os.environ) if environ is None else environ
        keys = [key.strip() for key in environ.get("POSEVIT_API_KEYS", "").split(",")]
        if key_file:
            path = Path(key_file)
            if not path.is_file():
                raise ConfigError(f"serve.api_keys_file = {key_file!r}: no such file (one API key per line)")
            keys += [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        return cls([key for key in keys if key])

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def valid(self, candidate: str | None) -> bool:
        """Constant-time comparison against every key (no early exit that would time the match)."""
        if candidate is None:
            return False
        given = candidate.encode()
        matches = [secrets.compare_digest(given, key) for key in self._keys]
        return any(matches)
