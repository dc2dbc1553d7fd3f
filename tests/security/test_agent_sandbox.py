"""Attack 4: an agent writes tests (a conftest.py) that read chiffon's secrets, reach the database or the
network, or write outside its worktree. Its test command runs in the bubblewrap sandbox."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastmcp import Client

from chiffon.servers.tasks.repo import Workspaces, create_repo_server
from tests.conftest import git_commit_all

ESCAPES = '''
import os, pathlib, socket

def test_no_credentials_in_the_environment():
    leaked = [k for k in os.environ if k.startswith("CHIFFON_") or k in ("SSH_AUTH_SOCK", "ANTHROPIC_API_KEY")]
    assert leaked == []

def test_no_network_to_the_database():
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", {port})) != 0

def test_no_chiffon_state():
    assert not pathlib.Path({secret!r}).exists()

def test_nothing_written_outside_the_worktree():
    try:
        pathlib.Path({outside!r}).write_text("escaped")
    except OSError:
        return
    raise AssertionError("wrote outside the worktree")
'''


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port something listens on, standing in for PostgreSQL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


async def run_escapes(tmp_path: Path, port: int, sandbox: str) -> dict:
    home = tmp_path / "chiffon-home"
    (home / "secrets").mkdir(parents=True)
    secret = home / "secrets" / "plan-x.yml"
    secret.write_text("db_password: hunter2\n")
    repo = tmp_path / "agent-repo"
    repo.mkdir()
    outside = repo / "escaped.txt"  # the human's checkout, outside the agent's worktree
    (repo / "test_escapes.py").write_text(ESCAPES.format(port=port, secret=str(secret), outside=str(outside)))
    git_commit_all(repo)
    workspaces = Workspaces(home / "worktrees")
    workspaces.create("task-1", repo, f"{sys.executable} -m pytest -q -p no:cacheprovider test_escapes.py")
    os.environ["CHIFFON_TEST_SECRET_TOKEN"] = "s3cret"
    try:
        async with Client(create_repo_server(workspaces, 120, sandbox=sandbox, hidden=[home])) as client:
            report = (await client.call_tool("run_tests", {"task_id": "task-1"})).structured_content
    finally:
        del os.environ["CHIFFON_TEST_SECRET_TOKEN"]
    report["escaped"] = outside.exists()
    return report


async def test_agent_tests_cannot_reach_secrets_network_or_files_outside_the_worktree(
        tmp_path: Path, listener: int) -> None:
    report = await run_escapes(tmp_path, listener, "bwrap")
    assert report["passed"], report["output_tail"]
    assert "4 passed" in report["output_tail"] and not report["escaped"]


async def test_without_the_sandbox_the_same_tests_do_escape(tmp_path: Path, listener: int) -> None:
    """The control: the attacks are real, so the sandboxed run passing above means the sandbox held."""
    report = await run_escapes(tmp_path, listener, "none")
    assert not report["passed"]
    assert "test_no_network_to_the_database FAILED" in report["output_tail"] or "failed" in report["output_tail"]
    assert report["escaped"]
