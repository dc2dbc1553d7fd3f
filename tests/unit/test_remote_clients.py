"""chiffon install --url: each client's documented remote syntax, a URL that cannot leak the token, files 0600."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chiffon.orchestrator.clients import CLIENTS, check_url, install, remote_entry
from chiffon.shared.errors import InvalidInput

CHIFFON = str(Path(sys.executable).parent / "chiffon")
URL = "https://ai:8765/mcp"
TOKEN = "tok_" + "A" * 40

# The remote server shape each client documents (required keys and their types; nothing else allowed):
# Claude Code .mcp.json and VS Code .vscode/mcp.json: {"type": "http", "url", "headers"};
# Cursor ~/.cursor/mcp.json and Trae .trae/mcp.json: {"url", "headers"};
# Antigravity mcp_config.json: {"serverUrl", "headers"};
# Claude Desktop has no remote servers in its file: a stdio command (mcp-remote) with args and env.
SCHEMAS: dict[str, dict[str, type]] = {
    "claude-code": {"type": str, "url": str, "headers": dict},
    "vscode": {"type": str, "url": str, "headers": dict},
    "cursor": {"url": str, "headers": dict},
    "trae": {"url": str, "headers": dict},
    "antigravity": {"serverUrl": str, "headers": dict},
    "claude-desktop": {"command": str, "args": list, "env": dict},
}


def conforms(entry: dict[str, Any], schema: dict[str, type]) -> bool:
    return set(entry) == set(schema) and all(isinstance(entry[k], t) for k, t in schema.items())


@pytest.mark.parametrize("client", CLIENTS)
def test_remote_entry_has_the_clients_documented_shape(client: str) -> None:
    entry = remote_entry(client, URL, TOKEN)
    assert conforms(entry, SCHEMAS[client]), entry
    if client == "claude-desktop":
        assert entry["command"] == "npx" and entry["args"][:3] == ["-y", "mcp-remote", URL]
        assert entry["args"][3:] == ["--header", "Authorization:${CHIFFON_AUTH}"]
        assert entry["env"] == {"CHIFFON_AUTH": f"Bearer {TOKEN}"}
    else:
        assert entry.get("url", entry.get("serverUrl")) == URL
        assert entry["headers"] == {"Authorization": f"Bearer {TOKEN}"}
        if client in ("claude-code", "vscode"):
            assert entry["type"] == "http"


@pytest.mark.parametrize("url, why", [
    ("http://ai:8765/mcp", "clear text"),
    ("https://user:pw@ai:8765/mcp", "no user, password"),
    ("https://ai:8765/mcp?token=x", "no user, password, query"),
    ("https://ai:8765/mcp#x", "fragment"),
    ("file:///etc/passwd", "use https://"),
    ("javascript:alert(1)", "use https://"),
    ("https://ai:99999/mcp", "not a URL"),
    ("https://ai:8765/mcp\n--header", "control characters"),
    ("https:///mcp", "use https://"),
])
def test_urls_that_could_leak_the_token_or_inject_are_refused(url: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        check_url(url)


def test_plain_http_is_allowed_on_loopback_or_when_asked() -> None:
    assert check_url("http://127.0.0.1:8765/mcp") == "http://127.0.0.1:8765/mcp"
    assert check_url("http://ai:8765/mcp", allow_http=True) == "http://ai:8765/mcp"


@pytest.mark.parametrize("token", ["", "two words", "line\nbreak", "tab\there"])
def test_a_token_that_is_not_one_clean_line_is_refused(token: str) -> None:
    with pytest.raises(InvalidInput, match="one line"):
        remote_entry("cursor", URL, token)


def test_a_config_holding_a_token_is_written_private_and_so_is_its_backup(tmp_path: Path) -> None:
    target = tmp_path / "mcp.json"
    target.write_text(json.dumps({"mcpServers": {}}))
    target.chmod(0o644)
    path, config, backup = install("cursor", path=target, entry=remote_entry("cursor", URL, TOKEN))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert backup is not None and stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["mcpServers"]["chiffon"]["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_install_cli_writes_the_remote_entry_and_reads_the_token_from_stdin(tmp_path: Path) -> None:
    target = tmp_path / "mcp_config.json"
    done = subprocess.run([CHIFFON, "install", "antigravity", "--path", str(target), "--url", URL, "--token", "-"],
                          input=TOKEN + "\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    entry = json.loads(target.read_text())["mcpServers"]["chiffon"]
    assert entry == {"serverUrl": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}}
    refused = subprocess.run([CHIFFON, "install", "cursor", "--path", str(tmp_path / "c.json"), "--url",
                              "http://ai:8765/mcp", "--token", TOKEN], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "clear text" in refused.stderr and not (tmp_path / "c.json").exists()
    mixed = subprocess.run([CHIFFON, "install", "cursor", "--path", str(tmp_path / "c.json"), "--token", TOKEN],
                           capture_output=True, text=True, timeout=120)
    assert mixed.returncode == 2 and "--token goes with --url" in mixed.stderr


def test_a_local_entry_records_its_toolsets(tmp_path: Path) -> None:
    target = tmp_path / "mcp.json"
    done = subprocess.run([CHIFFON, "install", "trae", "--path", str(target), "--toolsets", "ansible,tasks"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(target.read_text())["mcpServers"]["chiffon"]["args"] == ["serve", "--toolsets", "ansible,tasks"]
    bad = subprocess.run([CHIFFON, "install", "trae", "--path", str(target), "--toolsets", "ansible,shell"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown: shell" in bad.stderr
