"""The access log without credentials: a client that puts its key in the URL (`?api_key=...`) is refused,
but uvicorn logs the request line as sent, so the values of credential-like query parameters are
replaced before any handler sees the record.
"""

from __future__ import annotations

import copy
import logging
from typing import Any
from urllib.parse import unquote_plus

from uvicorn.config import LOGGING_CONFIG

CREDENTIAL_PARAMETERS = frozenset({"api_key", "key", "token", "access_token"})
REDACTED = "[redacted]"
ACCESS_LOGGER = "uvicorn.access"


def redact_credentials(target: str) -> str:
    """`target` (a path with its query string, as uvicorn logs it) with credential values replaced."""
    path, question_mark, query = target.partition("?")
    if not question_mark:
        return target
    pairs = []
    for pair in query.split("&"):
        name, equals, _ = pair.partition("=")
        if equals and unquote_plus(name).strip().lower() in CREDENTIAL_PARAMETERS:
            pair = f"{name}={REDACTED}"
        pairs.append(pair)
    return f"{path}?{'&'.join(pairs)}"


class RedactCredentials(logging.Filter):
    """For "uvicorn.access": its records carry (client, method, path?query, http version, status) as args."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(target := record.args[2], str):
            record.args = (*record.args[:2], redact_credentials(target), *record.args[3:])
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's own logging config, with the access logger's records redacted."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_credentials"] = {"()": RedactCredentials}
    access = config["loggers"][ACCESS_LOGGER]
    access["filters"] = [*access.get("filters", []), "redact_credentials"]
    return config
