"""An IDE on another address over HTTP: a live named token lists and calls tools, none or a revoked one gets
401, and the audit names the token that approved."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.conftest import KUMA_REQUEST, wait_healthy
from tests.e2e.test_cli import chiffon

CHIFFON = str(Path(sys.executable).parent / "chiffon")


def outward_address() -> str:
    """This machine's address on its first non-loopback route, or 127.0.0.1 where it has none."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by connect() on UDP
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def mcp_post(url: str, token: str | None) -> int:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "probe", "version": "0"}}}
    async with httpx.AsyncClient(timeout=30) as http:
        return (await http.post(url, headers=headers, json=body)).status_code


@pytest.fixture
def remote(cli_env: dict[str, str], repo: Path) -> Iterator[tuple[str, str, dict[str, str], str]]:
    """``chiffon serve --transport http`` bound beyond loopback with tool approval on, started once the named token
    ``remote-ide`` exists (HTTP needs a token): (url, address, env, that token)."""
    address, port = outward_address(), free_port()
    env = {**cli_env, "CHIFFON_APPROVALS__ALLOW_TOOL_APPROVAL": "true",
           "CHIFFON_HTTP__ALLOWED_HOSTS": json.dumps([address])}
    made = chiffon(env, "token", "create", "remote-ide")
    assert made.returncode == 0, made.stderr
    server = subprocess.Popen([CHIFFON, "serve", "--transport", "http", "--host", "0.0.0.0", "--port", str(port),
                               "--repo", str(repo)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    try:
        wait_healthy(f"http://{address}:{port}/health", server,
                     lambda: server.stderr.read() if server.stderr else "", timeout_s=120)
        yield f"http://{address}:{port}/mcp", address, env, made.stdout.strip()
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


async def test_remote_ide_needs_a_live_token_and_the_audit_names_it(
        remote: tuple[str, str, dict[str, str], str]) -> None:
    url, address, env, token = remote
    assert await mcp_post(url, None) == 401
    assert await mcp_post(url, "not-a-token") == 401
    async with Client(StreamableHttpTransport(url, headers={"Authorization": f"Bearer {token}"})) as client:
        names = {t.name for t in await client.list_tools()}
        assert {"plan_request", "execute_plan", "approve_plan"} <= names
        plan = (await client.call_tool("plan_request", {"request": KUMA_REQUEST})).structured_content
        await client.call_tool("approve_plan", {"plan_id": plan["id"], "reason": "reviewed remotely"})
        status = (await client.call_tool("plan_status", {"plan_id": plan["id"]})).structured_content
        audit = (await client.call_tool("audit_query", {"plan_id": plan["id"], "kind": "approval"})).structured_content
    approver = status["approval"]["approver"]
    assert "token:remote-ide" in approver and f"from {address}" in approver
    assert "token:remote-ide" in json.dumps(audit)
    assert chiffon(env, "token", "revoke", "remote-ide").returncode == 0
    assert await mcp_post(url, token) == 401
