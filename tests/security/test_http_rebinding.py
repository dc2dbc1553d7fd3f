"""Attack 2: DNS rebinding. A web page whose name resolves to 127.0.0.1 must not reach the MCP tools."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chiffon.shared.mcp import allowed_hosts_and_origins
from tests.llm.fakes import free_port

BIN = Path(sys.executable).parent
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "attacker", "version": "1"}}}
TOKEN = "rebinding-test-token"
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
           "Authorization": f"Bearer {TOKEN}"}  # the guard refuses a foreign Host or Origin even with the token


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``chiffon-ansible`` over streamable HTTP on loopback; yields its base URL."""
    import os

    from tests.conftest import EXAMPLE

    port = free_port()
    home = tmp_path_factory.mktemp("rebind-home")
    env = {**os.environ, "CHIFFON_HOME": str(home), "CHIFFON_HTTP__BEARER_TOKEN": TOKEN}
    proc = subprocess.Popen([str(BIN / "chiffon-ansible"), "--repo", str(EXAMPLE), "--transport", "http", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None:
            pytest.fail(f"chiffon-ansible exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_initialize_with_a_foreign_host_header_is_refused_before_any_session(server: str) -> None:
    response = httpx.post(f"{server}/mcp", json=INITIALIZE, headers={**HEADERS, "Host": "rebind.attacker.example"})
    assert response.status_code == 421 and "mcp-session-id" not in response.headers


def test_initialize_from_a_foreign_origin_is_refused(server: str) -> None:
    response = httpx.post(f"{server}/mcp", json=INITIALIZE,
                          headers={**HEADERS, "Origin": "http://rebind.attacker.example"})
    assert response.status_code == 403 and "mcp-session-id" not in response.headers


def test_the_operator_on_localhost_still_gets_in(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    response = httpx.post(f"{server}/mcp", json=INITIALIZE,
                          headers={**HEADERS, "Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"})
    assert response.status_code == 200


def test_allowed_hosts_add_the_names_the_operator_configured() -> None:
    hosts, origins = allowed_hosts_and_origins("0.0.0.0", 8765, ["ai.homelab.lan"])
    assert "ai.homelab.lan:8765" in hosts and "0.0.0.0" not in hosts
    assert "https://ai.homelab.lan:8765" in origins and "http://evil.example" not in origins
