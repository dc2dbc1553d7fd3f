"""Changing the user's config file (``chiffon config set``, ``chiffon console passwd``): one dotted key at a time,
validated as the whole configuration before anything is written.

A change is checked in three steps, and a failure at any of them changes nothing: the KEY against the settings'
schema (each part a name; unknown parts listed with the known ones), the VALUE as one line of YAML (so ``7861``
is a number, ``true`` a bool, ``[a, b]`` a list; for a text field the text as typed), then the candidate file
merged with every other layer and the environment through :class:`~chiffon.shared.config.Settings`. The file is
then replaced atomically, mode 0600, its folder made 0700 when chiffon creates it. Comments in the file are not
kept (it is rewritten from its parsed YAML).
"""

from __future__ import annotations

import copy
import datetime
import os
import re
import tempfile
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from chiffon.shared.config.files import ConfigLayer, discover_layers, load_yaml_mapping, user_config_path
from chiffon.shared.errors import ConfigError, InvalidInput

_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_TEXT_TYPES = (str, Path, SecretStr)


def parse_key(key: str) -> tuple[str, ...]:
    """A dotted KEY (``console.port``) as its parts.

    Raises:
        InvalidInput: an empty part (``a..b``), a part with anything but letters, digits, ``_`` and ``-``
            (``../x``, ``a/b``), more than 8 parts.
    """
    parts = tuple(key.split("."))
    if len(parts) > 8 or not all(_PART.fullmatch(part) for part in parts):
        raise InvalidInput("KEY", f"{key!r} is not a dotted key: use names of letters, digits, '_' and '-' joined "
                                  "by '.', e.g. console.port or ansible.inventory")
    return parts


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of ``X | Y | None`` (None left out), or ``[annotation]``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for alt in _unwrap(annotation):
        if isinstance(alt, type) and issubclass(alt, BaseModel):
            return alt
    return None


def field_annotation(parts: tuple[str, ...]) -> Any:
    """The type the settings expect at ``parts`` (a section, a field, or a value of a free mapping such as
    ``hosts.<name>``).

    Raises:
        InvalidInput: a part is not a key there (the message lists the known keys), or the key goes inside a
            value that has no keys (a list or a scalar).
    """
    from chiffon.shared.config import Settings

    annotation: Any = Settings
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "the top level"
        model = _model_of(annotation)
        if model is not None:
            if part not in model.model_fields:
                raise InvalidInput("KEY", f"{'.'.join(parts)}: unknown key {part!r} in {where}; known keys "
                                          f"there: {', '.join(sorted(model.model_fields))}")
            annotation = model.model_fields[part].annotation
        elif any(typing.get_origin(alt) is dict for alt in _unwrap(annotation)):
            annotation = typing.get_args(next(a for a in _unwrap(annotation) if typing.get_origin(a) is dict))[-1]
        else:
            raise InvalidInput("KEY", f"{'.'.join(parts)}: {where} holds a single value, not keys: set "
                                      f"{where} itself")
    return annotation


def is_secret(annotation: Any, _depth: int = 0) -> bool:
    """Whether a value of ``annotation`` holds a secret anywhere (a SecretStr field, list, mapping or section
    with one): such values are never taken from the command line or shown."""
    if _depth > 6:
        return False
    for alt in _unwrap(annotation):
        if alt is SecretStr:
            return True
        if any(is_secret(arg, _depth + 1) for arg in typing.get_args(alt)):
            return True
        if isinstance(alt, type) and issubclass(alt, BaseModel) and any(
                is_secret(f.annotation, _depth + 1) for f in alt.model_fields.values()):
            return True
    return False


def parse_value(raw: str, annotation: Any) -> Any:
    """VALUE as typed on the command line, for a field of type ``annotation``: one line of YAML (``7861``,
    ``true``, ``[a, b]``, ``{address: 10.0.0.5}``, ``null`` to unset), except that for a text field (and for a
    date) VALUE stays the text as typed: ``ansible.inventory 012`` is ``"012"``, ``a: b`` is ``"a: b"``.

    Raises:
        InvalidInput: VALUE spans lines or holds control characters, or is not valid YAML.
    """
    if any(ord(ch) < 32 and ch != "\t" for ch in raw) or "\x7f" in raw:
        raise InvalidInput("VALUE", "one line of text, without control characters (a list: '[a, b]', a mapping: "
                                    "'{key: value}')")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InvalidInput("VALUE", f"not valid YAML ({str(exc).splitlines()[0]}); quote text with ':' or '#' in "
                                    "it") from exc
    alts = _unwrap(annotation)
    text_only = all(a in _TEXT_TYPES or _is_text_literal(a) for a in alts)
    if value is not None and (text_only or isinstance(value, datetime.date)):
        return raw  # text as typed: `a: b`, `012`, `{{ x }}` stay strings (a list or mapping is no text anyway)
    return value


def _is_text_literal(annotation: Any) -> bool:
    return typing.get_origin(annotation) is typing.Literal and all(
        isinstance(a, str) for a in typing.get_args(annotation))


def set_in(data: dict[str, Any], parts: tuple[str, ...], value: Any) -> None:
    """Put ``value`` at ``parts`` in ``data``, making the mappings on the way; ``value`` None removes the key
    (and mappings it leaves empty).

    Raises:
        InvalidInput: something on the way already holds a value that is not a mapping (named).
    """
    node = data
    trail: list[tuple[dict[str, Any], str]] = []
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            if value is None:
                return
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise InvalidInput("KEY", f"{'.'.join(parts[:depth + 1])} holds {child!r} in the file, not keys")
        trail.append((node, part))
        node = child
    if value is None:
        node.pop(parts[-1], None)
        for parent, part in reversed(trail):
            if parent[part]:
                break
            del parent[part]
    else:
        node[parts[-1]] = value


def get_in(data: Any, parts: tuple[str, ...]) -> Any:
    """The value at ``parts`` of nested mappings/models; raises KeyError when a part is absent."""
    node = data
    for part in parts:
        if isinstance(node, BaseModel):
            node = getattr(node, part)
        elif isinstance(node, dict):
            node = node[part]
        else:
            raise KeyError(part)
    return node


def write_user_file(change: Callable[[dict[str, Any]], None], *, user_file: Path | None = None,
                    config_file: Path | None = None, host: str | None = None) -> Path:
    """Apply ``change`` to the user's config file and write it, once the whole configuration it makes is valid.

    Args:
        change: edits the file's mapping in place (may raise :class:`InvalidInput`).
        user_file: the file (default :func:`~chiffon.shared.config.files.user_config_path`); a symlink is
            written through to its target.
        config_file: ``--config``, layered over it while validating, as when chiffon runs.
        host: host whose ``hosts/<host>.yaml`` files apply while validating.

    Returns:
        The file written (mode 0600; its folder created 0700 when missing); left as it is when ``change``
        changed nothing.

    Raises:
        InvalidInput: from ``change``.
        ConfigError: the file cannot be read or is not a YAML mapping, or the result is not a valid
            configuration (naming the file and key, as at startup); nothing is written.
    """
    path = (user_file or user_config_path()).absolute()
    if path.is_symlink():
        path = path.resolve()
    data = load_yaml_mapping(path)
    before = copy.deepcopy(data)
    change(data)
    if data == before:
        return path  # nothing to write (an unset of a key the file does not hold)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    _validate(text, path, config_file, host)
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True)
    fd, tmp = tempfile.mkstemp(prefix=".chiffon-", suffix=".yaml", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _validate(text: str, path: Path, config_file: Path | None, host: str | None) -> None:
    """Build the settings with ``text`` as the user layer (a private temp file standing in for ``path``)."""
    from chiffon.shared.config import settings_from_layers

    fd, tmp = tempfile.mkstemp(prefix="chiffon-candidate-", suffix=".yaml")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        layers = [ConfigLayer("user", Path(tmp), "read") if layer.label == "user" else layer
                  for layer in discover_layers(config_file, host)]
        try:
            settings_from_layers(layers, host)
        except ConfigError as exc:
            raise ConfigError(f"{str(exc).replace(tmp, str(path))}; {path} is unchanged") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def upsert_operator(data: dict[str, Any], name: str, password_hash: str) -> bool:
    """Put operator ``name`` with ``password_hash`` into ``console.operators`` of a config mapping, replacing
    one of the same name and keeping the others; returns True when one was replaced.

    Raises:
        InvalidInput: ``console`` or ``console.operators`` in the file is not a mapping/list.
    """
    console = data.setdefault("console", {})
    if not isinstance(console, dict):
        raise InvalidInput("console", "the file's console: is not a mapping")
    operators = console.setdefault("operators", [])
    if not isinstance(operators, list):
        raise InvalidInput("console.operators", "the file's console.operators is not a list")
    entry = {"name": name, "password_hash": password_hash}
    for index, existing in enumerate(operators):
        if isinstance(existing, dict) and existing.get("name") == name:
            operators[index] = entry
            return True
    operators.append(entry)
    return False


def overridden_by(parts: tuple[str, ...], layers: list[ConfigLayer], env: dict[str, str] | None = None) -> list[str]:
    """What sets ``parts`` above the user's file, so that a value written there would not take effect: the files
    of later layers holding the key, then environment variables naming it or a part of it."""
    env = dict(os.environ) if env is None else env
    users = [i for i, layer in enumerate(layers) if layer.label.startswith("user")]
    above = layers[users[-1] + 1:] if users else layers
    found = []
    for layer in above:
        if layer.state != "read":
            continue
        try:
            get_in(load_yaml_mapping(layer.path), parts)
        except (KeyError, ConfigError):
            continue
        found.append(str(layer.path))
    variable = "CHIFFON_" + "__".join(part.upper() for part in parts)
    for name in sorted(env):
        upper = name.upper()
        if upper.startswith("CHIFFON_") and (variable.startswith(upper + "__") or variable == upper
                                             or upper.startswith(variable + "__")):
            found.append(f"environment {name}")
    return found
