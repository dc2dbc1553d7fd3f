"""Where chiffon's configuration comes from: the YAML layers, in order, and what became of each.

Layers, lowest first (a later one wins; nested mappings merge key by key, a list or a scalar is replaced):

====  ===================  =========================================================================
 1    shipped defaults     ``deploy/config/chiffon.yaml`` (inside the package once installed)
 2    user                 ``$XDG_CONFIG_HOME/chiffon/chiffon.yaml`` (default ``~/.config/chiffon/``;
                           ``%APPDATA%\\chiffon\\chiffon.yaml`` on Windows)
 3    system (service)     ``/etc/chiffon/chiffon.yaml`` (``%PROGRAMDATA%`` on Windows;
                           ``CHIFFON_SYSTEM_CONFIG`` moves it: tests, unusual installs)
 4    explicit             ``--config FILE``, else ``CHIFFON_CONFIG``
====  ===================  =========================================================================

Each file may have a sibling ``hosts/<host>.yaml`` merged right after it (``CHIFFON_HOST``, default the short
hostname). A missing file of layers 1-3 is skipped, and so is one that cannot be read (logged); a file named by
``--config``/``CHIFFON_CONFIG`` that is missing or unreadable is an error naming it. Environment variables and
CLI flags win over every file (:mod:`chiffon.shared.config`).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from chiffon.shared.errors import ConfigError
from chiffon.shared.resources import shipped_config_dir

log = logging.getLogger(__name__)

DEFAULT_CONFIG = shipped_config_dir() / "chiffon.yaml"  # package data (chiffon/deploy/config in the wheel)
SYSTEM_CONFIG = Path("/etc/chiffon/chiffon.yaml")

State = Literal["read", "missing", "not readable"]


@dataclass(frozen=True)
class ConfigLayer:
    """One YAML file chiffon looks for.

    Attributes:
        label: what the layer is (``shipped defaults``, ``user``, ``system``, ``CHIFFON_CONFIG``, ``--config``,
            or ``<label> host <name>`` for a ``hosts/<name>.yaml`` beside one).
        path: the file, absolute.
        state: ``read`` (merged), ``missing`` or ``not readable`` (skipped; with ``detail`` saying why).
        explicit: named by ``--config``/``CHIFFON_CONFIG``: missing or unreadable is then an error.
        detail: why a file was not readable (the OS error), else empty.
        for_host: the host a ``hosts/<host>.yaml`` override is for; empty for a base file.
    """

    label: str
    path: Path
    state: State
    explicit: bool = False
    detail: str = ""
    for_host: str = ""


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The user's config file: ``$XDG_CONFIG_HOME/chiffon/chiffon.yaml`` (an absolute XDG_CONFIG_HOME only, as
    the XDG spec says), else ``~/.config/chiffon/chiffon.yaml``; on Windows ``%APPDATA%\\chiffon\\chiffon.yaml``.

    Args:
        env: the environment to read (default ``os.environ``).
    """
    env = os.environ if env is None else env
    if sys.platform == "win32" and env.get("APPDATA"):
        return Path(env["APPDATA"]) / "chiffon" / "chiffon.yaml"
    xdg = env.get("XDG_CONFIG_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path(env.get("HOME") or Path.home()) / ".config"
    return base / "chiffon" / "chiffon.yaml"


def system_config_path(env: Mapping[str, str] | None = None) -> Path:
    """The service's config file: ``CHIFFON_SYSTEM_CONFIG`` if set, else ``/etc/chiffon/chiffon.yaml``
    (``%PROGRAMDATA%\\chiffon\\chiffon.yaml`` on Windows)."""
    env = os.environ if env is None else env
    if env.get("CHIFFON_SYSTEM_CONFIG"):
        return Path(env["CHIFFON_SYSTEM_CONFIG"])
    if sys.platform == "win32" and env.get("PROGRAMDATA"):
        return Path(env["PROGRAMDATA"]) / "chiffon" / "chiffon.yaml"
    return SYSTEM_CONFIG


def this_host(host: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The host whose ``hosts/<host>.yaml`` overrides apply: ``host``, else ``CHIFFON_HOST``, else the short
    hostname."""
    env = os.environ if env is None else env
    return host or env.get("CHIFFON_HOST") or socket.gethostname().split(".")[0]


def _parse(path: Path, text: str) -> dict[str, Any]:
    """``text`` of ``path`` as a mapping (empty: ``{}``); invalid YAML or another shape is an error naming it."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of keys (ansible:, console:, ...), not a "
                          f"{type(data).__name__}")
    return data


def _probe(label: str, path: Path, explicit: bool = False, for_host: str = "") -> ConfigLayer:
    """Whether ``path`` can be read as a YAML mapping; invalid YAML is an error naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigLayer(label, path, "missing", explicit, for_host=for_host)
    except OSError as exc:
        return ConfigLayer(label, path, "not readable", explicit, exc.strerror or type(exc).__name__, for_host)
    except UnicodeDecodeError:
        return ConfigLayer(label, path, "not readable", explicit, "not UTF-8 text", for_host)
    _parse(path, text)
    return ConfigLayer(label, path, "read", explicit, for_host=for_host)


def discover_layers(config_file: Path | None = None, host: str | None = None,
                    env: Mapping[str, str] | None = None, *, strict: bool = True) -> list[ConfigLayer]:
    """Every file chiffon looks for, lowest first, each with its state.

    Args:
        config_file: the ``--config`` file; it takes the explicit slot, so ``CHIFFON_CONFIG`` is then not read.
        host: host whose ``hosts/<host>.yaml`` files apply (default :func:`this_host`).
        env: the environment (default ``os.environ``).
        strict: raise for an explicit file that is missing or unreadable (False: report it, as
            ``chiffon config path`` does).

    Raises:
        ConfigError: (strict) the explicit file is missing or unreadable; any file read is not valid YAML or not
            a mapping.
    """
    env = os.environ if env is None else env
    name = this_host(host, env)
    bases: list[tuple[str, Path, bool]] = [("shipped defaults", DEFAULT_CONFIG, False),
                                           ("user", user_config_path(env), False),
                                           ("system", system_config_path(env), False)]
    if config_file is not None:
        bases.append(("--config", Path(config_file), True))
    elif env.get("CHIFFON_CONFIG"):
        bases.append(("CHIFFON_CONFIG", Path(env["CHIFFON_CONFIG"]), True))
    layers: list[ConfigLayer] = []
    for label, path, explicit in bases:
        layer = _probe(label, path.expanduser().absolute(), explicit)
        if layer.state != "read":
            if explicit and strict:
                why = "does not exist" if layer.state == "missing" else f"cannot be read ({layer.detail})"
                raise ConfigError(f"config file {layer.path} {why} (named by {label})")
            if layer.state == "not readable":
                log.warning("skipping config file %s: %s", layer.path, layer.detail)
            layers.append(layer)
            continue
        layers.append(layer)
        override = _probe(f"{label}, host {name}", layer.path.parent / "hosts" / f"{name}.yaml", for_host=name)
        if override.state == "read":
            layers.append(override)
    return layers


def read_files(layers: list[ConfigLayer]) -> list[Path]:
    """The files merged, lowest first."""
    return [layer.path for layer in layers if layer.state == "read"]


def sources_summary(layers: list[ConfigLayer]) -> str:
    """One line naming the files: ``read: A, B; not found: C; not readable: D`` (empty groups left out)."""
    groups = (("read", "read"), ("not found", "missing"), ("not readable", "not readable"))
    parts = []
    for title, state in groups:
        paths = [str(layer.path) for layer in layers if layer.state == state]
        if paths:
            parts.append(f"{title}: {', '.join(paths)}")
    return "; ".join(parts) or "no config file"


def config_env_names(env: Mapping[str, str] | None = None) -> list[str]:
    """Names (never values) of the environment variables that shape the configuration: every ``CHIFFON_*``,
    and ``XDG_CONFIG_HOME`` (``APPDATA``/``PROGRAMDATA`` on Windows) when set: they move the user/system file."""
    env = os.environ if env is None else env
    moving = {"APPDATA", "PROGRAMDATA"} if sys.platform == "win32" else {"XDG_CONFIG_HOME"}
    return sorted(name for name in env if name.upper().startswith("CHIFFON_") or name in moving)


def load_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file as a mapping; missing or empty: ``{}``.

    Raises:
        ConfigError: it cannot be read, is not valid YAML, or is not a mapping (named).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from exc
    return _parse(path, text)
