"""Server settings: the `serve:` section of params.yaml when it is in the working directory (the project's
`make serve`), then POSEVIT_<KEY> environment variables, then flags (`core.settings`, shared with
`posevit predict`: the model, device, backend, precision and limits are the same fields in both).

Each key of `serve` is a flag (`--max-batch-size 32`) and an environment variable
(`POSEVIT_MAX_BATCH_SIZE=32`). Outside a project (a container, any other folder) the schema's defaults
apply, which a test holds equal to `conf/serve/default.yaml`; nothing else of params.yaml is read or
validated. Secrets are not settings: API keys come from POSEVIT_API_KEYS or the file
`serve.api_keys_file` names.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from posevit.core import settings
from posevit.core.config import ServeConfig
from posevit.core.paths import PARAMS_FILE
from posevit.core.settings import ENV_PREFIX, flag

__all__ = ["ENV_PREFIX", "add_setting_flags", "flag", "load_settings"]


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per `serve` key; values stay strings until the schema validates them."""
    settings.add_setting_flags(parser, ServeConfig, ServeConfig.section)


def load_settings(
    flags: Mapping[str, object | None], params: Path = PARAMS_FILE, environ: Mapping[str, str] | None = None
) -> ServeConfig:
    return settings.load_settings(ServeConfig, ServeConfig.section, flags, params, environ)
