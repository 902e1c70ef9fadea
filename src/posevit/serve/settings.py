"""Server settings: `conf/serve/` (through params.yaml), then POSEVIT_<KEY> environment variables, then flags.

Each key of `serve` is a flag (`--max-batch-size 32`) and an environment variable
(`POSEVIT_MAX_BATCH_SIZE=32`); the result is validated like the rest of the config. Outside
a project (a container with no params.yaml) the schema's defaults apply, which a test holds
equal to `conf/serve/default.yaml`. Secrets are not settings: API keys come from
POSEVIT_API_KEYS or the file `serve.api_keys_file` names.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from posevit.core.config import ServeConfig, validate_serve
from posevit.core.paths import PARAMS_FILE

ENV_PREFIX = "POSEVIT_"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `serve` key; values stay strings until the schema validates them."""
    for name, field in ServeConfig.model_fields.items():
        parser.add_argument(
            flag(name),
            dest=name,
            default=None,
            metavar="VALUE",
            help=f"{field.description or name} (serve.{name}, env {ENV_PREFIX}{name.upper()})",
        )


def load_settings(
    flags: Mapping[str, object | None], params: Path = PARAMS_FILE, environ: Mapping[str, str] | None = None
) -> ServeConfig:
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    if params.is_file():
        raw.update((yaml.safe_load(params.read_text(encoding="utf-8")) or {}).get("serve") or {})
    for name in ServeConfig.model_fields:
        if ENV_PREFIX + name.upper() in environ:
            raw[name] = environ[ENV_PREFIX + name.upper()]
        if flags.get(name) is not None:
            raw[name] = flags[name]
    return validate_serve(raw)
