"""IDE client configs: add chiffon's MCP server to Claude Desktop, Claude Code, Cursor, VS Code, Trae, Antigravity.

=================  ====================================================  ==============
client             file (``--path`` overrides)                           servers key
=================  ====================================================  ==============
``claude-desktop`` ``~/.config/Claude/claude_desktop_config.json``       ``mcpServers``
                   (macOS ``~/Library/Application Support/Claude/``,
                   Windows ``%APPDATA%\\Claude\\``)
``claude-code``    ``.mcp.json`` in the current directory (project)      ``mcpServers``
``cursor``         ``~/.cursor/mcp.json``                                ``mcpServers``
``vscode``         ``.vscode/mcp.json`` in the current directory         ``servers``
``trae``           ``.trae/mcp.json`` in the current directory           ``mcpServers``
``antigravity``    ``~/.gemini/antigravity/mcp_config.json``             ``mcpServers``
=================  ====================================================  ==============

The entry named ``chiffon`` runs ``chiffon serve`` over stdio with absolute paths
and the ``CHIFFON_*`` variables that locate this installation. Every other server
in the file is kept as it is; the file is backed up before it is written, and a
file that is not valid JSON is refused and left untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from chiffon.shared.errors import ConfigError, InvalidInput

CLIENTS = ("claude-desktop", "claude-code", "cursor", "vscode", "trae", "antigravity")
SERVER_NAME = "chiffon"
_ENV_KEYS = ("CHIFFON_HOME", "CHIFFON_CONFIG", "CHIFFON_REPO", "CHIFFON_DATABASE_URL", "CHIFFON_REDIS_URL",
             "CHIFFON_CHROMA_URL")


def config_path(client: str, *, home: Path | None = None, cwd: Path | None = None) -> Path:
    """Where ``client`` reads its MCP servers. Raises InvalidInput for an unknown client."""
    home = home or Path.home()
    cwd = cwd or Path.cwd()
    if client == "claude-desktop":
        if sys.platform == "darwin":
            return home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
        if os.name == "nt":
            return Path(os.environ.get("APPDATA", home / "AppData" / "Roaming")) / "Claude" / "claude_desktop_config.json"
        return home / ".config" / "Claude" / "claude_desktop_config.json"
    paths = {"claude-code": cwd / ".mcp.json", "cursor": home / ".cursor" / "mcp.json",
             "vscode": cwd / ".vscode" / "mcp.json", "trae": cwd / ".trae" / "mcp.json",
             "antigravity": home / ".gemini" / "antigravity" / "mcp_config.json"}
    if client not in paths:
        raise InvalidInput("client", f"{client!r} is not one of {', '.join(CLIENTS)}")
    return paths[client]


def credentialed(env: dict[str, str] | os._Environ[str]) -> list[str]:
    """The CHIFFON_* URL variables of ``env`` that embed a password (``postgresql://u:pw@host/db``)."""
    found = []
    for key in _ENV_KEYS:
        value = env.get(key) or ""
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.append(key)
    return found


def server_entry(client: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``chiffon`` entry: absolute ``chiffon`` path, ``serve``, and the CHIFFON_* variables that are set,
    except URLs that carry a password (:func:`credentialed`): client config files are not secret stores."""
    command = shutil.which("chiffon") or str(Path(sys.executable).parent / "chiffon")
    source = os.environ if env is None else env
    entry: dict[str, Any] = {"command": str(Path(command).resolve()), "args": ["serve"]}
    found = {k: str(Path(source[k]).resolve()) if k in ("CHIFFON_HOME", "CHIFFON_CONFIG", "CHIFFON_REPO") else source[k]
             for k in _ENV_KEYS if source.get(k) and k not in credentialed(source)}
    if found:
        entry["env"] = found
    if client in ("vscode", "claude-code"):
        entry = {"type": "stdio", **entry}
    return entry


def merged(client: str, path: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """The client's config with the ``chiffon`` entry added or replaced, everything else kept.

    Raises:
        ConfigError: the file is not valid JSON, or its servers key is not an object (the file is named).
    """
    key = "servers" if client == "vscode" else "mcpServers"
    data: Any = {}
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if text.strip():
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); fix or move it, "
                                  "nothing was changed") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object; nothing was changed")
    servers = data.get(key, {})
    if not isinstance(servers, dict):
        raise ConfigError(f"{path}: {key!r} must be a JSON object of servers; nothing was changed")
    return {**data, key: {**servers, SERVER_NAME: entry}}


def install(client: str, *, path: Path | None = None, dry_run: bool = False,
            env: dict[str, str] | None = None) -> tuple[Path, dict[str, Any], Path | None]:
    """Add chiffon to ``client``'s config; returns (file, the merged config, the backup or None).

    With ``dry_run`` nothing is written. Raises InvalidInput (unknown client) or ConfigError (see :func:`merged`).
    """
    target = path or config_path(client)
    if client not in CLIENTS:
        raise InvalidInput("client", f"{client!r} is not one of {', '.join(CLIENTS)}")
    config = merged(client, target, server_entry(client, env))
    if dry_run:
        return target, config, None
    target.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if target.exists():
        backup = target.with_name(f"{target.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(target, backup)
    tmp = target.with_name(target.name + ".chiffon-tmp")
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target, config, backup
