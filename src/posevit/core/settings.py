"""A command's settings from one typed schema: every field is a flag, an environment variable and a help line.

Values, later ones winning: the schema's default; the command's section of params.yaml (`serve:`), read
only when the command names one and the file is in the working directory (the project's `make serve`);
POSEVIT_<KEY>; --<key>. Values stay strings until the schema validates them, so a bad one fails before
any work with one line that names the key, where the value came from and what is allowed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from posevit.core.errors import ConfigError

ENV_PREFIX = "POSEVIT_"
Settings = TypeVar("Settings", bound=BaseModel)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def is_switch(field: FieldInfo) -> bool:
    """A flag without a value (`--resume`), marked in the schema: a bare bool flag could swallow a positional."""
    return isinstance(field.json_schema_extra, dict) and bool(field.json_schema_extra.get("switch"))


def metavar(field: FieldInfo) -> str:
    """What the value looks like: {a,b} for a choice, N for a number, N|auto for either, else VALUE."""
    parts = []
    union = get_origin(field.annotation) is not Literal and get_args(field.annotation)
    for option in union or (field.annotation,):
        if get_origin(option) is Literal:
            parts.append("{" + ",".join(map(str, get_args(option))) + "}")
        elif option is int or get_origin(option) is Annotated and get_args(option)[0] is int:
            parts.append("N")
        elif option is Path:
            parts.append("FILE")
        elif option is not type(None):
            parts.append("VALUE")
    return "VALUE" if "VALUE" in parts else "|".join(parts).replace("{auto}", "auto")


def add_setting_flags(
    parser: argparse.ArgumentParser, schema: type[BaseModel], section: str, short: Mapping[str, str] | None = None
) -> None:
    """One flag per field (`short` adds e.g. -o), its help the field's description, naming the key and variable."""
    for name, field in schema.model_fields.items():
        names = [*([short[name]] if short and name in short else []), flag(name)]
        help_text = f"{field.description} ({section}.{name}, env {env_name(name)})"
        if is_switch(field):
            parser.add_argument(*names, dest=name, action="store_const", const="true", help=help_text)
        else:
            parser.add_argument(*names, dest=name, default=None, metavar=metavar(field), help=help_text)


def load_settings(
    schema: type[Settings],
    section: str,
    flags: Mapping[str, object | None],
    params: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Validate defaults < `params`' `section:` (when given and present) < environment < flags."""
    environ = os.environ if environ is None else environ
    raw: dict[str, object] = {}
    origin: dict[str, str] = {}
    if params is not None and params.is_file():
        from_file = (yaml.safe_load(params.read_text(encoding="utf-8")) or {}).get(section) or {}
        raw.update(from_file)
        origin.update({name: f"in {params}" for name in from_file})
    for name in schema.model_fields:
        if env_name(name) in environ:
            raw[name], origin[name] = environ[env_name(name)], f"from {env_name(name)}"
        if flags.get(name) is not None:
            raw[name], origin[name] = flags[name], f"from {flag(name)}"
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        lines = describe_errors(schema, section, exc.errors(), origin)
        raise ConfigError(f"invalid {section} settings: " + "; ".join(lines)) from None


def allowed_range(field: FieldInfo | None) -> str:
    """'1 <= value <= 1024' from a field's bounds, or ''."""
    if field is None:
        return ""
    bounds = {name: getattr(m, name) for m in field.metadata for name in ("gt", "ge", "lt", "le") if hasattr(m, name)}
    low = f"{bounds['gt']} < " if "gt" in bounds else f"{bounds['ge']} <= " if "ge" in bounds else ""
    high = f" < {bounds['lt']}" if "lt" in bounds else f" <= {bounds['le']}" if "le" in bounds else ""
    return f"{low}value{high}" if low or high else ""


def describe_errors(
    schema: type[BaseModel], section: str, errors: list[ErrorDetails], origin: Mapping[str, str]
) -> list[str]:
    """One phrase per bad key: `serve.port = '99999' is invalid: ... (allowed: ...), from POSEVIT_PORT`."""
    by_key: dict[str, list[ErrorDetails]] = {}
    for error in errors:
        by_key.setdefault(str(error["loc"][0]) if error["loc"] else "", []).append(error)
    lines = []
    for name, group in by_key.items():
        key = f"{section}.{name}"
        if group[0]["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key {origin.get(name, '')} (misspelt? `--help` lists every setting)")
            continue
        problem = "; or ".join(error["msg"].removeprefix("Value error, ") for error in group)
        allowed = allowed_range(schema.model_fields.get(name))
        allowed = f" (allowed: {allowed})" if allowed else ""
        lines.append(f"{key} = {group[0]['input']!r} is invalid: {problem}{allowed}, {origin.get(name, 'default')}")
    return lines
