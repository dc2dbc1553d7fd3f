"""Issue 28, attacks 1 and 2: approvals that neither another local account nor the model can forge.

(a) another local account (uid nobody) reaching ``chiffon serve --transport http`` on loopback gets 401; HTTP
    without any token configured does not start. (b) a stdio client that names itself "Claude Desktop" and
    answers its own approval form is recorded as the client's word, never as a human; with
    ``approvals.require_totp`` it records nothing without the code. (c) ``chiffon approve`` on a pseudo-terminal
    with a piped ``y`` is recorded as the terminal account, not a human. (d) ``chiffon deploy`` keeps the TOTP
    secret in a root-owned 0600 file the model's account cannot read, and approval without the code is refused.
"""

from __future__ import annotations

import getpass
import json
import os
import pty
import secrets
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError
from mcp_types import Implementation
from pydantic import SecretStr

from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ConfigError
from chiffon.shared.runtime import Runtime
from tests.conftest import CHECKOUT, stop_group, wait_healthy
from tests.e2e.test_cli import chiffon
from tests.security.test_remote_ide import free_port

BIN = Path(sys.executable).parent
CHIFFON = str(BIN / "chiffon")
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
PROBE = """
import json, sys, httpx
url = sys.argv[1]
headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18",
        "capabilities": {"elicitation": {}}, "clientInfo": {"name": "Claude Desktop", "version": "1"}}}
plan = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "plan_request", "arguments": {"request": "deploy redis"}}}
first = httpx.post(url, headers=headers, json=init, timeout=60)
session = first.headers.get("mcp-session-id")
second = httpx.post(url, headers={**headers, **({"mcp-session-id": session} if session else {})}, json=plan,
                    timeout=120)
print(json.dumps({"uid": __import__("os").getuid(), "initialize": first.status_code, "plan": second.status_code}))
"""


def claude_desktop(env: dict[str, str], repo: Path, code: str = "") -> Client[Any]:
    """A client spawned by the caller (the model's own script) that says it is Claude Desktop and approves its
    own form."""

    async def approve(message: str, response_type: Any, params: Any, context: Any) -> dict[str, Any]:
        return {"approve": True, "reason": "looks fine to me", "code": code}

    transport = StdioTransport(command=CHIFFON, args=["serve", "--repo", str(repo)], env=env, cwd=str(CHECKOUT))
    return Client(transport, client_info=Implementation(name="Claude Desktop", version="0.14"),
                  elicitation_handler=approve, mode="legacy")


async def pending(rt: Runtime, repo: Path) -> plans.Plan:
    return await plans.create_plan(rt, await AnsibleService.for_runtime(rt, repo).catalog(), "echo-message.yml")


async def approval_of(rt: Runtime, plan_id: str) -> dict[str, Any] | None:
    row = await rt.store.pool.fetchrow("SELECT approver, channel FROM approvals WHERE plan_id=$1", plan_id)
    return dict(row) if row else None


@pytest.fixture
def http_server(cli_env: dict[str, str], repo: Path) -> Iterator[tuple[str, str]]:
    """``chiffon serve --transport http`` on its defaults (127.0.0.1, no operator token) on a free port, with one
    named client token made by ``chiffon token create``: (url, that token)."""
    name, port = f"principals-{secrets.token_hex(4)}", free_port()
    made = chiffon(cli_env, "token", "create", name)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    proc = subprocess.Popen([CHIFFON, "serve", "--transport", "http", "--port", str(port), "--repo", str(repo)],
                            env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc, lambda: proc.stderr.read() if proc.stderr else "",
                     timeout_s=120)
        yield f"http://127.0.0.1:{port}/mcp", token
    finally:
        stop_group(proc)
        chiffon(cli_env, "token", "revoke", name)


# (a) another local account over loopback HTTP


async def test_another_local_account_over_loopback_http_gets_401_and_plans_nothing(
        http_server: tuple[str, str], rt: Runtime) -> None:
    url, _ = http_server
    before = await rt.store.pool.fetchval("SELECT count(*) FROM plans")
    probe = subprocess.run([*AS_NOBODY, sys.executable, "-c", PROBE, url], capture_output=True, text=True,
                           timeout=180, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen == {"uid": 65534, "initialize": 401, "plan": 401}
    assert await rt.store.pool.fetchval("SELECT count(*) FROM plans") == before


def test_metrics_need_the_token_and_health_does_not(http_server: tuple[str, str]) -> None:
    import httpx

    url, token = http_server
    base = url.removesuffix("/mcp")
    assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
    assert httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200


def test_http_without_any_token_configured_refuses_to_start(tmp_path: Path, repo: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIFFON_")}
    env |= {"CHIFFON_HOME": str(tmp_path / "home")}  # no bearer token, no named tokens
    proc = subprocess.run([CHIFFON, "serve", "--transport", "http", "--port", str(free_port()), "--repo", str(repo)],
                          env=env, capture_output=True, text=True, timeout=300)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2, said
    assert "chiffon token create" in said and "CHIFFON_HTTP__BEARER_TOKEN" in said


# (b) the model's own stdio client answers its own form


async def test_a_self_named_claude_desktop_approval_is_recorded_as_client_asserted(
        cli_env: dict[str, str], repo: Path, rt: Runtime) -> None:
    async with claude_desktop(cli_env, repo) as client:
        plan = (await client.call_tool("ansible_check", {"playbook": "echo-message.yml"})).structured_content
        result = (await client.call_tool("execute_plan", {"plan_id": plan["id"]})).structured_content
    assert result["status"] == "succeeded"
    approval = await approval_of(rt, plan["id"])
    assert approval is not None and approval["approver"] == 'client-asserted "Claude Desktop"'
    audit = rt.audit.query(plan_id=plan["id"], kind="approval")
    assert audit and audit[0].body["approver"] == 'client-asserted "Claude Desktop"'
    assert "human" not in approval["approver"] and "human" not in audit[0].subject


async def test_with_require_totp_a_self_answered_form_without_the_code_records_and_runs_nothing(
        cli_env: dict[str, str], repo: Path, rt: Runtime) -> None:
    env = {**cli_env, "CHIFFON_APPROVALS__REQUIRE_TOTP": "true",
           "CHIFFON_APPROVALS__TOTP_SECRET": pyotp.random_base32()}
    plan = await pending(rt, repo)
    async with claude_desktop(env, repo) as client:
        with pytest.raises(ToolError, match="one-time code"):
            await client.call_tool("execute_plan", {"plan_id": plan.id})
    assert (await plans.get_plan(rt, plan.id)).status == "pending_approval"
    assert await approval_of(rt, plan.id) is None
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0


async def test_require_totp_without_a_secret_refuses_every_approval_with_the_fix(rt: Runtime, repo: Path) -> None:
    plan = await pending(rt, repo)
    rt.settings.approvals.require_totp = True
    try:
        with pytest.raises(ConfigError, match="chiffon totp setup"):
            await plans.decide(rt, plan.id, "approved", approver="anyone", channel="terminal")
    finally:
        rt.settings.approvals.require_totp = False
    assert (await plans.get_plan(rt, plan.id)).status == "pending_approval"
    assert await approval_of(rt, plan.id) is None


async def test_a_valid_code_is_what_the_record_says_proves_the_approval(rt: Runtime, repo: Path) -> None:
    secret = pyotp.random_base32()
    plan = await pending(rt, repo)
    rt.settings.approvals.totp_secret = SecretStr(secret)
    try:
        await plans.decide(rt, plan.id, "approved", approver='client-asserted "Claude Desktop"',
                           channel="mcp-elicitation", code=pyotp.TOTP(secret).now())
    finally:
        rt.settings.approvals.totp_secret = None
    approval = await approval_of(rt, plan.id)
    assert approval is not None and approval["approver"] == 'client-asserted "Claude Desktop" + totp'


# (c) a pseudo-terminal with a piped "y"


def on_a_pty(argv: list[str], env: dict[str, str], typed: bytes) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin/stdout/stderr, type ``typed`` into it; (exit code, output)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    os.write(leader, typed)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return proc.wait(60), output.decode(errors="replace")


async def test_a_pty_approve_with_piped_y_is_recorded_as_the_terminal_account(
        cli_env: dict[str, str], repo: Path, rt: Runtime) -> None:
    plan = await pending(rt, repo)
    rc, output = on_a_pty([CHIFFON, "approve", plan.id], cli_env, b"y\n")
    assert rc == 0, output
    approval = await approval_of(rt, plan.id)
    assert approval is not None and approval["approver"] == getpass.getuser()
    assert approval["channel"] == f"terminal (uid {os.getuid()}, not proof of a human)"
    audit = rt.audit.query(plan_id=plan.id, kind="approval")
    assert audit and audit[0].body["channel"] == approval["channel"] and "human via" not in audit[0].subject


# (d) the service-account arrangement of `chiffon deploy`


def test_the_deployed_totp_secret_is_unreadable_by_another_account_and_approval_needs_the_code(
        cli_env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    etc = Path(tempfile.mkdtemp(prefix="chiffon-etc-"))
    try:
        etc.chmod(0o755)  # the directory does not hide the file: its own mode must
        env_file, units = etc / "chiffon.env", tmp_path / "units"
        made = chiffon(cli_env, "deploy", "systemd", "--host", "ai", "--out", str(units), "--env-file", str(env_file))
        assert made.returncode == 0, made.stderr
        assert "otpauth://totp/" in made.stderr and "otpauth://" not in made.stdout
        stat = env_file.stat()
        assert stat.st_mode & 0o777 == 0o600 and stat.st_uid == 0
        read = subprocess.run([*AS_NOBODY, "cat", str(env_file)], capture_output=True, text=True, timeout=30)
        assert read.returncode != 0 and "Permission denied" in read.stderr and not read.stdout
        values = dict(line.split("=", 1) for line in env_file.read_text().splitlines()
                      if "=" in line and not line.startswith("#"))
        assert values["CHIFFON_APPROVALS__TOTP_SECRET"] and values["CHIFFON_HTTP__BEARER_TOKEN"]
        assert "Environment=CHIFFON_APPROVALS__REQUIRE_TOTP=true" in (units / "chiffon-orchestrator.service").read_text()
        again = chiffon(cli_env, "deploy", "systemd", "--host", "ai", "--out", str(units), "--env-file", str(env_file))
        assert again.returncode == 0 and "otpauth://" not in again.stderr  # the secret is made once, never replaced
        assert env_file.read_text().count("CHIFFON_APPROVALS__TOTP_SECRET=") == 1
    finally:
        for path in sorted(etc.rglob("*"), reverse=True):
            path.unlink()
        etc.rmdir()


async def test_the_service_refuses_an_approval_without_the_deployed_code(
        cli_env: dict[str, str], repo: Path, rt: Runtime) -> None:
    """What the orchestrator unit gets from the env file (the secret) and its unit (require_totp): the model's
    self-answered form, with no code, approves nothing."""
    env = {**cli_env, "CHIFFON_APPROVALS__REQUIRE_TOTP": "true"}
    plan = await pending(rt, repo)
    async with claude_desktop(env, repo) as client:  # require_totp with no secret readable here: refused
        with pytest.raises(ToolError, match="chiffon totp setup"):
            await client.call_tool("execute_plan", {"plan_id": plan.id})
    assert await approval_of(rt, plan.id) is None


async def test_doctor_warns_that_approvals_are_not_provable_under_the_invoking_account(tmp_path: Path) -> None:
    from chiffon.orchestrator.doctor import approvals_provable
    from chiffon.shared.config import load_settings

    home = tmp_path / "home"
    home.mkdir()
    status, detail = await approvals_provable(load_settings(None, home=home))  # the embedded single-account default
    assert status == "degraded" and f"uid {os.getuid()} owns {home}" in detail and "no TOTP secret" in detail
    assert "chiffon deploy systemd" in detail
    os.chown(home, 65534, 65534)  # chiffon's state belongs to another account, and its secret is not readable here
    assert (await approvals_provable(load_settings(None, home=home)))[0] == "ok"
    status, detail = await approvals_provable(load_settings(None, home=home,
                                                            approvals={"totp_secret": pyotp.random_base32()}))
    assert status == "degraded" and "TOTP secret is readable" in detail


def test_console_passwd_offers_totp_on_stderr_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIFFON_")} | {"CHIFFON_HOME": str(tmp_path)}
    made = subprocess.run([CHIFFON, "console", "passwd", "alice", "--totp"], input="correct horse battery 42\n",
                          env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert "otpauth://totp/chiffon:alice?secret=" in made.stderr and "CHIFFON_APPROVALS__TOTP_SECRET" in made.stderr
    assert "otpauth" not in made.stdout and "secret" not in made.stdout  # stdout is the config entry, often a file
    assert not list(tmp_path.iterdir())  # nothing written
