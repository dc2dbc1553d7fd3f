"""chiffon install: IDE client configs merged, backed up, never clobbered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chiffon.orchestrator.clients import CLIENTS, config_path, install
from chiffon.shared.errors import ConfigError, InvalidInput

CHIFFON = str(Path(sys.executable).parent / "chiffon")
OTHER = {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-github"], "env": {"GITHUB_TOKEN": "x"}}


def test_install_merges_keeps_other_servers_and_backs_up(tmp_path: Path) -> None:
    target = tmp_path / "claude_desktop_config.json"
    target.write_text(json.dumps({"globalShortcut": "Ctrl+Space", "mcpServers": {"github": OTHER}}))
    env = {"CHIFFON_HOME": str(tmp_path / "home"), "PATH": "/usr/bin"}
    written, config, backup = install("claude-desktop", path=target, env=env)
    on_disk = json.loads(written.read_text())
    assert on_disk == config and on_disk["globalShortcut"] == "Ctrl+Space" and on_disk["mcpServers"]["github"] == OTHER
    entry = on_disk["mcpServers"]["chiffon"]
    assert Path(entry["command"]).is_absolute() and entry["args"] == ["serve"]
    assert entry["env"] == {"CHIFFON_HOME": str((tmp_path / "home").resolve())}
    assert backup is not None and json.loads(backup.read_text())["mcpServers"] == {"github": OTHER}
    again, _, _ = install("claude-desktop", path=target, env=env)  # idempotent: still one chiffon entry
    assert list(json.loads(again.read_text())["mcpServers"]) == ["github", "chiffon"]


def test_vscode_uses_its_servers_key_and_stdio_type(tmp_path: Path) -> None:
    _, config, backup = install("vscode", path=tmp_path / ".vscode" / "mcp.json", env={})
    assert backup is None and config["servers"]["chiffon"]["type"] == "stdio" and "mcpServers" not in config


@pytest.mark.parametrize("text, problem", [("{not json", "not valid JSON"), ("[1, 2]", "top level"),
                                           ('{"mcpServers": []}', "must be a JSON object")])
def test_a_broken_config_is_refused_and_left_untouched(tmp_path: Path, text: str, problem: str) -> None:
    target = tmp_path / "mcp.json"
    target.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        install("cursor", path=target, env={})
    assert target.read_text() == text and list(tmp_path.iterdir()) == [target]


def test_unknown_client_and_default_paths(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not one of claude-desktop"):
        install("notepad", path=tmp_path / "x.json")
    assert config_path("antigravity", home=tmp_path) == tmp_path / ".gemini" / "antigravity" / "mcp_config.json"
    assert config_path("claude-code", cwd=tmp_path) == tmp_path / ".mcp.json"
    assert {config_path(c, home=tmp_path, cwd=tmp_path).name for c in CLIENTS} >= {"mcp.json", "mcp_config.json"}


def test_install_print_shows_the_merge_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "mcp.json"
    target.write_text(json.dumps({"mcpServers": {"github": OTHER}}))
    done = subprocess.run([CHIFFON, "install", "trae", "--print", "--path", str(target)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert set(shown["mcpServers"]) == {"github", "chiffon"}
    assert json.loads(target.read_text()) == {"mcpServers": {"github": OTHER}}
    target.write_text("{oops")
    refused = subprocess.run([CHIFFON, "install", "trae", "--path", str(target)], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "not valid JSON" in refused.stderr and target.read_text() == "{oops"


def test_install_never_writes_a_password_into_the_client_config(tmp_path: Path) -> None:
    target = tmp_path / "mcp.json"
    env = {"CHIFFON_DATABASE_URL": "postgresql://chiffon:s3cret@db.lan/chiffon",
           "CHIFFON_REDIS_URL": "redis://east.lan:6379/0", "PATH": "/usr/bin"}
    written, _, _ = install("cursor", path=target, env=env)
    text = written.read_text()
    assert "s3cret" not in text and "CHIFFON_DATABASE_URL" not in text
    assert json.loads(text)["mcpServers"]["chiffon"]["env"] == {"CHIFFON_REDIS_URL": "redis://east.lan:6379/0"}
