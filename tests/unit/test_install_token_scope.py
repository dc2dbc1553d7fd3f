"""chiffon install --url --token never puts a token into a git work tree without saying so: Claude Code's entry goes
to its user scope (~/.claude.json) by default, --token-env writes a ${VAR} placeholder, and writing a token into a
work tree needs --force-token-in-repo. Each case runs the real CLI with a temporary git repo as cwd and HOME."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from chiffon.orchestrator.clients import git_work_tree, holds_token, install, remote_entry
from chiffon.shared.errors import InvalidInput

CHIFFON = str(Path(sys.executable).parent / "chiffon")
URL = "https://ai:8765/mcp"
TOKEN = "tok_" + "B" * 40


@pytest.fixture
def work(tmp_path: Path) -> tuple[Path, Path]:
    """(a git work tree to run in, an empty HOME outside it)."""
    repo, home = tmp_path / "project", tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo, home


def install_cli(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)}
    env.pop("CHIFFON_CONFIG", None)
    return subprocess.run([CHIFFON, "install", *args], cwd=cwd, env=env, input=TOKEN + "\n", capture_output=True,
                          text=True, timeout=120, umask=0o022)  # a user's usual umask, whatever the session set


def test_claude_code_with_a_token_writes_the_user_scope_not_the_repo(work: tuple[Path, Path]) -> None:
    repo, home = work
    done = install_cli(repo, home, "claude-code", "--url", URL, "--token", "-")
    assert done.returncode == 0, done.stderr
    user = home / ".claude.json"
    assert json.loads(user.read_text())["mcpServers"]["chiffon"] == {
        "type": "http", "url": URL, "headers": {"Authorization": f"Bearer {TOKEN}"}}
    assert stat.S_IMODE(user.stat().st_mode) == 0o600
    assert not (repo / ".mcp.json").exists() and TOKEN not in done.stderr + done.stdout
    assert f"wrote {user} (Claude Code's user scope: every project)" in done.stderr


def test_the_user_scope_keeps_what_claude_code_stored_there(work: tuple[Path, Path]) -> None:
    repo, home = work
    other = {"type": "stdio", "command": "npx", "args": ["-y", "some-server"]}
    (home / ".claude.json").write_text(json.dumps({"numStartups": 7, "projects": {"/x": {}},
                                                   "mcpServers": {"other": other}}))
    assert install_cli(repo, home, "claude-code", "--url", URL, "--token", "-").returncode == 0
    config = json.loads((home / ".claude.json").read_text())
    assert config["numStartups"] == 7 and config["projects"] == {"/x": {}}
    assert set(config["mcpServers"]) == {"other", "chiffon"} and config["mcpServers"]["other"] == other


def test_a_token_into_the_projects_mcp_json_is_refused_inside_a_work_tree(work: tuple[Path, Path]) -> None:
    repo, home = work
    refused = install_cli(repo, home, "claude-code", "--scope", "project", "--url", URL, "--token", "-")
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert f"inside the git work tree {repo}" in message and "nothing was written" in message
    assert "--token-env CHIFFON_TOKEN" in message and "--force-token-in-repo" in message
    assert not (repo / ".mcp.json").exists() and not (home / ".claude.json").exists()


def test_an_explicit_path_inside_a_work_tree_is_refused_for_every_client(work: tuple[Path, Path]) -> None:
    repo, home = work
    for client, rel in (("vscode", ".vscode/mcp.json"), ("trae", ".trae/mcp.json"), ("cursor", "conf/mcp.json"),
                        ("claude-desktop", "claude.json")):
        refused = install_cli(repo, home, client, "--url", URL, "--token", "-", "--path", str(repo / rel))
        assert refused.returncode == 2 and "inside the git work tree" in refused.stderr, client
        assert not (repo / rel).exists()


def test_vscode_writes_its_workspace_file_outside_a_work_tree(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    done = install_cli(tmp_path / "ws", tmp_path, "vscode", "--url", URL, "--token", "-")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "ws" / ".vscode" / "mcp.json").read_text())["servers"]["chiffon"]["url"] == URL


def test_token_env_writes_a_placeholder_the_project_can_commit(work: tuple[Path, Path]) -> None:
    repo, home = work
    done = install_cli(repo, home, "claude-code", "--scope", "project", "--url", URL, "--token-env", "CHIFFON_TOKEN")
    assert done.returncode == 0, done.stderr
    text = (repo / ".mcp.json").read_text()
    assert json.loads(text)["mcpServers"]["chiffon"]["headers"] == {"Authorization": "Bearer ${CHIFFON_TOKEN}"}
    assert TOKEN not in text and stat.S_IMODE((repo / ".mcp.json").stat().st_mode) == 0o644
    assert "set CHIFFON_TOKEN to the token" in " ".join(done.stderr.split())


def test_token_env_without_a_scope_goes_to_the_project(work: tuple[Path, Path]) -> None:
    repo, home = work
    done = install_cli(repo, home, "claude-code", "--url", URL, "--token-env", "CHIFFON_TOKEN")
    assert done.returncode == 0, done.stderr
    assert (repo / ".mcp.json").exists() and not (home / ".claude.json").exists()


def test_forcing_a_token_into_the_repo_warns_whether_git_ignores_it(work: tuple[Path, Path]) -> None:
    repo, home = work
    forced = install_cli(repo, home, "claude-code", "--scope", "project", "--url", URL, "--token", "-",
                         "--force-token-in-repo")
    assert forced.returncode == 0, forced.stderr
    assert TOKEN in (repo / ".mcp.json").read_text()
    assert "git does NOT ignore it" in " ".join(forced.stderr.split())
    (repo / ".gitignore").write_text(".mcp.json\n")
    again = install_cli(repo, home, "claude-code", "--scope", "project", "--url", URL, "--token", "-",
                        "--force-token-in-repo")
    assert again.returncode == 0 and "git ignores it" in " ".join(again.stderr.split())


def test_a_home_that_is_a_git_work_tree_is_refused_too(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # dotfiles kept in git
    (tmp_path / "elsewhere").mkdir()
    refused = install_cli(tmp_path / "elsewhere", tmp_path, "claude-code", "--url", URL, "--token", "-")
    assert refused.returncode == 2 and f"{tmp_path / '.claude.json'} is inside the git work tree" in refused.stderr
    assert not (tmp_path / ".claude.json").exists()


@pytest.mark.parametrize("args, why", [
    (["--token-env", "X; rm -rf /"], "not an environment variable name"),
    (["--token-env", "1ABC"], "not an environment variable name"),
    (["--token-env", "CHIFFON_TOKEN", "--token", "-"], "not both"),
])
def test_a_bad_token_env_is_refused_and_writes_nothing(work: tuple[Path, Path], args: list[str], why: str) -> None:
    repo, home = work
    refused = install_cli(repo, home, "claude-code", "--url", URL, *args)
    assert refused.returncode == 2 and why in refused.stderr
    assert not (repo / ".mcp.json").exists() and not (home / ".claude.json").exists()


def test_token_env_is_for_claude_code_only() -> None:
    with pytest.raises(InvalidInput, match="only claude-code expands"):
        remote_entry("cursor", URL, None, token_env="CHIFFON_TOKEN")


def test_a_placeholder_is_not_a_token_but_every_literal_is() -> None:
    assert not holds_token(remote_entry("claude-code", URL, None, token_env="CHIFFON_TOKEN"))
    assert all(holds_token(remote_entry(c, URL, TOKEN)) for c in ("claude-code", "cursor", "claude-desktop"))


def test_a_work_tree_is_found_from_a_folder_not_made_yet_and_through_a_worktree_file(tmp_path: Path) -> None:
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / ".git").write_text("gitdir: /elsewhere/.git/worktrees/linked\n")
    assert git_work_tree(tmp_path / "linked" / "not" / "yet" / "mcp.json") == tmp_path / "linked"
    assert git_work_tree(tmp_path / "mcp.json") is None


def test_the_library_refuses_as_the_cli_does(work: tuple[Path, Path]) -> None:
    repo, _ = work
    with pytest.raises(InvalidInput, match="inside the git work tree"):
        install("cursor", path=repo / "mcp.json", entry=remote_entry("cursor", URL, TOKEN))
    assert not (repo / "mcp.json").exists()
    written, _, _ = install("cursor", path=repo / "mcp.json", entry=remote_entry("cursor", URL, TOKEN),
                            token_in_repo=True)
    assert TOKEN in written.read_text()
