"""The README's remote debug command: the MCP Inspector CLI (package.json's version) lists the tools of a
token-protected ``chiffon serve --transport http`` when it sends the bearer token, and gets nothing without it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CHECKOUT, wait_healthy
from tests.console.helpers import free_port

BIN = Path(sys.executable).parent
INSPECTOR = CHECKOUT / "node_modules" / ".bin" / "mcp-inspector"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


@pytest.fixture(scope="module")
def served(home: Path, targets: Path, repo: Path) -> Iterator[tuple[str, str]]:
    """``chiffon serve --transport http`` on a free loopback port and a token made for it: (MCP URL, token); one
    server for the module."""
    cli_env = {**os.environ, "CHIFFON_HOME": str(home), "HOMELAB_ROOT": str(targets)}
    made = subprocess.run([str(BIN / "chiffon"), "token", "create", "inspector-http"], env=cli_env,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    port = free_port()
    server = subprocess.Popen([str(BIN / "chiffon"), "serve", "--transport", "http", "--port", str(port), "--repo",
                               str(repo)], env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", server,
                     lambda: server.stderr.read() if server.stderr else "", timeout_s=180)
        yield f"http://127.0.0.1:{port}/mcp", made.stdout.strip()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        subprocess.run([str(BIN / "chiffon"), "token", "revoke", "inspector-http"], env=cli_env,
                       capture_output=True, timeout=120)


def inspect(url: str, *headers: str) -> subprocess.CompletedProcess[str]:
    if not INSPECTOR.exists():
        pytest.fail("MCP Inspector missing: run `npm install` (the README's test command does)")
    extra = [a for h in headers for a in ("--header", h)]
    return subprocess.run([str(INSPECTOR), "--cli", url, "--transport", "http", *extra, "--method", "tools/list"],
                          capture_output=True, text=True, timeout=180, cwd=CHECKOUT, stdin=subprocess.DEVNULL)


def test_the_inspector_cli_lists_tools_over_http_with_a_bearer_token(served: tuple[str, str]) -> None:
    url, token = served
    listed = inspect(url, f"Authorization: Bearer {token}")
    assert listed.returncode == 0, listed.stderr[-2000:]
    names = {t["name"] for t in json.loads(listed.stdout)["tools"]}
    assert {"plan_request", "execute_plan", "plan_status", "audit_query"} <= names


def test_the_inspector_cli_gets_no_tools_without_the_token(served: tuple[str, str]) -> None:
    url, _ = served
    refused = inspect(url)
    assert refused.returncode != 0 and '"tools"' not in refused.stdout
    wrong = inspect(url, "Authorization: Bearer not-a-token")
    assert wrong.returncode != 0 and '"tools"' not in wrong.stdout
