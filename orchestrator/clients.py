"""IDE client configs: add chiffon's MCP server to Claude Desktop, Claude Code, Cursor, VS Code, Trae, Antigravity.

=================  ====================================================  ==============
client             file (``--path`` overrides)                           servers key
=================  ====================================================  ==============
``claude-desktop`` ``~/.config/Claude/claude_desktop_config.json``       ``mcpServers``
                   (macOS ``~/Library/Application Support/Claude/``,
                   Windows ``%APPDATA%\\Claude\\``)
``claude-code``    ``.mcp.json`` in the current directory (project);     ``mcpServers``
                   with a token ``~/.claude.json`` (user scope)
``cursor``         ``~/.cursor/mcp.json``                                ``mcpServers``
``vscode``         ``.vscode/mcp.json`` in the current directory         ``servers``
``trae``           ``.trae/mcp.json`` in the current directory           ``mcpServers``
``antigravity``    ``~/.gemini/antigravity/mcp_config.json``             ``mcpServers``
=================  ====================================================  ==============

The entry named ``chiffon`` runs ``chiffon serve`` over stdio with absolute paths
and the ``CHIFFON_*`` variables that locate this installation. Every other server
in the file is kept as it is; the file is backed up before it is written, and a
file that is not valid JSON is refused and left untouched.

With a URL (an orchestrator on another machine, ``chiffon serve --transport http``),
the entry is remote, in each client's own syntax (:func:`remote_entry`), and sends
``Authorization: Bearer <token>`` (required: the server answers no client without one, loopback included); a
file that holds a token is written 0600.

A token never lands in a file inside a git work tree without saying so (:func:`git_work_tree`): Claude Code's
remote entry goes to its user scope (``~/.claude.json``, top-level ``mcpServers``, what ``claude mcp add --scope
user`` writes) rather than the project's ``.mcp.json``; ``token_env`` writes ``Bearer ${NAME}`` instead of the
token (Claude Code expands environment variables in ``.mcp.json``); any other write of a token into a work tree
is refused unless ``token_in_repo`` is given.
"""

from __future__ import annotations

import json
import os
import re
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


def config_path(client: str, *, home: Path | None = None, cwd: Path | None = None, user_scope: bool = False) -> Path:
    """Where ``client`` reads its MCP servers; ``user_scope``: Claude Code's user config (``~/.claude.json``, every
    project) instead of the project's ``.mcp.json`` (other clients have one place). Raises InvalidInput for an
    unknown client."""
    home = home or Path.home()
    cwd = cwd or Path.cwd()
    if client == "claude-code" and user_scope:
        return home / ".claude.json"
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


def check_url(url: str, *, allow_http: bool = False) -> str:
    """``url`` if it is an ``https://`` (or, for loopback or with ``allow_http``, ``http://``) URL with a host
    and no credentials, query or fragment.

    Raises:
        InvalidInput: anything else; a bearer token must not cross the network in clear text.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise InvalidInput("--url", f"{url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("--url", f"{url!r}: use https://HOST:PORT/mcp")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput("--url", "no user, password, query or fragment in the URL; the token goes in --token")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput("--url", "the URL holds whitespace or control characters")
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "http" and not loopback and not allow_http:
        raise InvalidInput("--url", f"http:// to {parts.hostname} would send the token in clear text; serve HTTPS "
                                    "(http.tls_cert and http.tls_key) and use https://, or pass --allow-http")
    return url


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def remote_entry(client: str, url: str, token: str | None, *, token_env: str | None = None) -> dict[str, Any]:
    """The ``chiffon`` entry for an orchestrator at ``url``, in ``client``'s documented syntax:

    * ``claude-code`` (``.mcp.json``) and ``vscode`` (``.vscode/mcp.json``): ``{"type": "http", "url", "headers"}``;
    * ``cursor`` and ``trae``: ``{"url", "headers"}``;
    * ``antigravity``: ``{"serverUrl", "headers"}``;
    * ``claude-desktop``, whose config file has no remote servers: the ``mcp-remote`` stdio bridge (npm),
      ``npx -y mcp-remote URL --header Authorization:${CHIFFON_AUTH}`` with the header's value in ``env``
      (the form mcp-remote documents, since some clients mangle spaces in arguments).

    ``token_env`` (``claude-code`` only): the header says ``Bearer ${NAME}``, which Claude Code fills from its
    environment, and ``token`` is not needed.

    Raises InvalidInput for an unknown client, no token (every chiffon HTTP server needs one, loopback
    included), or a token that is not one printable line; a ``token_env`` that is not a variable name, given with
    a token, or for another client.
    """
    if client not in CLIENTS:
        raise InvalidInput("client", f"{client!r} is not one of {', '.join(CLIENTS)}")
    if token_env is not None:
        if client != "claude-code":
            raise InvalidInput("--token-env", f"only claude-code expands ${{VAR}} in its config; for {client} pass "
                                              "--token - (the file is written 0600 outside any git work tree)")
        if not _ENV_NAME.fullmatch(token_env):
            raise InvalidInput("--token-env", f"{token_env!r} is not an environment variable name (letters, digits, "
                                              "_; not starting with a digit)")
        if token is not None:
            raise InvalidInput("--token-env", "give --token or --token-env, not both: with --token-env the token "
                                              "lives only in that environment variable")
        return {"type": "http", "url": url, "headers": {"Authorization": f"Bearer ${{{token_env}}}"}}
    if token is None:
        raise InvalidInput("--token", "chiffon's HTTP server answers only clients with a token, on loopback too; "
                                      "run `chiffon token create NAME` where the orchestrator runs and pass what it "
                                      "prints with --token - (read from stdin)")
    if not token or any(c.isspace() or ord(c) < 32 for c in token):
        raise InvalidInput("--token", "a token is one line without spaces, as `chiffon token create` printed it")
    headers = {"Authorization": f"Bearer {token}"}
    if client == "claude-desktop":
        return {"command": "npx", "args": ["-y", "mcp-remote", url, "--header", "Authorization:${CHIFFON_AUTH}"],
                "env": {"CHIFFON_AUTH": f"Bearer {token}"}}
    key = "serverUrl" if client == "antigravity" else "url"
    entry: dict[str, Any] = {key: url, "headers": headers}
    if client in ("vscode", "claude-code"):
        entry = {"type": "http", **entry}
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


_PLACEHOLDER = re.compile(r"^Bearer \$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_LITERAL_BEARER = re.compile(r"Bearer (?!\$\{[A-Za-z_][A-Za-z0-9_]*\}\")")


def holds_token(entry: dict[str, Any]) -> bool:
    """Whether ``entry`` carries a literal bearer token (a header or env value ``Bearer ...`` that is not a
    ``${VAR}`` placeholder)."""
    values = [*(entry.get("headers") or {}).values(), *(entry.get("env") or {}).values()]
    return any(isinstance(v, str) and v.startswith("Bearer ") and not _PLACEHOLDER.match(v) for v in values)


def git_work_tree(path: Path) -> Path | None:
    """The top of the git work tree that would hold the file ``path`` (which may not exist yet): the nearest folder
    at or above its (symlink-resolved) parent with a ``.git`` entry, a folder or the file of a linked worktree or
    submodule; None outside any. Reads the filesystem only (no git needed)."""
    parent = Path(os.path.realpath(path.expanduser().absolute().parent))
    for folder in (parent, *parent.parents):
        if (folder / ".git").exists():
            return folder
    return None


def ignored_by_git(path: Path) -> bool | None:
    """Whether git ignores ``path`` in its work tree (``git check-ignore``); None when git cannot say."""
    import subprocess

    try:
        done = subprocess.run(["git", "check-ignore", "-q", "--", str(path)], cwd=path.parent, capture_output=True,
                              timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return {0: True, 1: False}.get(done.returncode)


def install(client: str, *, path: Path | None = None, dry_run: bool = False, env: dict[str, str] | None = None,
            entry: dict[str, Any] | None = None, token_in_repo: bool = False) -> tuple[Path, dict[str, Any], Path | None]:
    """Add chiffon to ``client``'s config; returns (file, the merged config, the backup or None).

    ``entry``: the entry to write (:func:`remote_entry`); default the local stdio one (:func:`server_entry`).
    With ``dry_run`` nothing is written. A config that holds a bearer token is written mode 0600, and so is its
    backup.

    Raises:
        InvalidInput: an unknown client; an entry holding a literal token (:func:`holds_token`) bound for a file
            inside a git work tree (:func:`git_work_tree`) without ``token_in_repo`` (nothing is written; the
            message names the file, the work tree and the alternatives).
        ConfigError: see :func:`merged`.
    """
    if client not in CLIENTS:
        raise InvalidInput("client", f"{client!r} is not one of {', '.join(CLIENTS)}")
    target = path or config_path(client)
    entry = entry if entry is not None else server_entry(client, env)
    config = merged(client, target, entry)
    if dry_run:
        return target, config, None
    tree = git_work_tree(target) if holds_token(entry) else None
    if tree is not None and not token_in_repo:
        other = ("leave out --path and --scope project (Claude Code's user scope, ~/.claude.json, is the default "
                 "with a token), or --token-env CHIFFON_TOKEN (writes ${CHIFFON_TOKEN}, safe to commit)"
                 if client == "claude-code" else "--path to a file outside any git work tree")
        raise InvalidInput("--token", f"{target} is inside the git work tree {tree}: a token written there is one "
                                      f"`git add` away from a commit, so nothing was written. Use {other}, or "
                                      "--force-token-in-repo to write it there anyway")
    target.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if target.exists():
        backup = target.with_name(f"{target.name}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(target, backup)
    secret = _LITERAL_BEARER.search(json.dumps(config)) is not None  # ours or another server's: owner only
    if secret and backup is not None:
        backup.chmod(0o600)
    tmp = target.with_name(target.name + ".chiffon-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(config, indent=2) + "\n")
    if secret:
        tmp.chmod(0o600)  # an existing temp file keeps its mode through os.open
    tmp.replace(target)
    return target, config, backup
