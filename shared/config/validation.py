"""Configuration errors a person can act on: which file or variable, which key, what was expected."""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel


def describe(model: type[BaseModel], error: Any, files: list[Path]) -> str:
    """One pydantic validation error of ``model`` as ``<source>: <dotted.key>: <problem>``: the source is the last
    YAML file of ``files`` holding the key, else the environment variable; an unknown key lists the known ones."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    source = _source_of(loc, files)
    if error["type"] == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        hint = f"; known keys here: {', '.join(known)}" if known else ""
        return f"{source}: {key}: unknown key{hint}"
    given = error.get("input")
    shown = f" (got {given!r})" if not isinstance(given, dict) else ""
    return f"{source}: {key}: {error['msg']}{shown}"


def _source_of(loc: list[str], files: list[Path]) -> str:
    """Where the value at ``loc`` came from: a ``CHIFFON_*`` variable naming it or a section above it (the
    environment wins over every file), else the last YAML file holding it."""
    variable = "CHIFFON_" + "__".join(part.upper() for part in loc)
    for name in os.environ:
        upper = name.upper()
        if upper.startswith("CHIFFON_") and (variable == upper or variable.startswith(upper + "__")):
            return f"environment {name}"
    for path in reversed(files):
        try:
            node: Any = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for part in loc:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return str(path)
    return "arguments" if loc else "configuration"


def _known_keys(root: type[BaseModel], loc: list[str]) -> list[str]:
    """The field names of the section at ``loc`` (empty when it is not a fixed section, e.g. a free mapping)."""
    model: Any = root
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(part)
            model = field.annotation if field else None
        elif typing.get_origin(model) is dict:  # dict[str, Model]: the loc goes through the key
            model = typing.get_args(model)[-1]
        else:
            return []
        sections = [a for a in typing.get_args(model) if isinstance(a, type) and issubclass(a, BaseModel)]
        if typing.get_origin(model) is not dict and sections:  # Model | None
            model = sections[0]
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(model.model_fields)
    return []
