"""A human, provably: with TOTP set up, no channel approves without the current one-time code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError
from pydantic import SecretStr

from chiffon.orchestrator.runs import running_infra_worker
from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import InvalidInput
from chiffon.shared.runtime import Runtime
from tests.e2e.test_cli import chiffon

SECRET = pyotp.random_base32()


@pytest.fixture
async def totp_on(rt: Runtime):  # type: ignore[no-untyped-def]
    rt.settings.approvals.totp_secret = SecretStr(SECRET)
    await rt.store.pool.execute("DELETE FROM totp_used")  # each test may use the current code once
    yield
    rt.settings.approvals.totp_secret = None


async def pending(rt: Runtime, repo: Path) -> plans.Plan:
    return await plans.create_plan(rt, await AnsibleService.for_runtime(rt, repo).catalog(), "echo-message.yml")


async def test_an_approval_without_the_code_or_with_a_wrong_one_records_nothing(rt: Runtime, repo: Path,
                                                                              totp_on: None) -> None:
    plan = await pending(rt, repo)
    with pytest.raises(InvalidInput, match="one-time code"):
        await plans.decide(rt, plan.id, "approved", approver="model", channel="cli")
    wrong = f"{(int(pyotp.TOTP(SECRET).now()) + 1) % 1_000_000:06d}"
    with pytest.raises(InvalidInput, match="wrong or expired"):
        await plans.decide(rt, plan.id, "approved", approver="model", channel="cli", code=wrong)
    assert (await plans.get_plan(rt, plan.id)).status == "pending_approval"
    approved = await plans.decide(rt, plan.id, "approved", approver="human", channel="cli",
                                  code=pyotp.TOTP(SECRET).now())
    assert approved.status == "approved"


async def test_a_code_that_approved_once_cannot_approve_again(rt: Runtime, repo: Path, totp_on: None) -> None:
    first, second = await pending(rt, repo), await pending(rt, repo)
    code = pyotp.TOTP(SECRET).now()
    await plans.decide(rt, first.id, "approved", approver="human", channel="cli", code=code)
    with pytest.raises(InvalidInput, match="already used"):  # read over the shoulder, or from a log
        await plans.decide(rt, second.id, "approved", approver="model", channel="mcp-tool", code=code)
    assert (await plans.get_plan(rt, second.id)).status == "pending_approval"
    assert await rt.store.pool.fetchval("SELECT count(*) FROM approvals WHERE plan_id=$1", second.id) == 0


async def test_the_approval_form_needs_the_code_too(rt: Runtime, repo: Path, totp_on: None) -> None:
    def form(code: str):  # type: ignore[no-untyped-def]
        async def handler(message: str, response_type: Any, params: Any, context: Any) -> dict[str, Any]:
            return {"approve": True, "reason": "ok", "code": code}
        return handler

    svc = AnsibleService.for_runtime(rt, repo)
    server = create_orchestrator(svc)
    plan = await pending(rt, repo)
    async with Client(server, mode="legacy", elicitation_handler=form("")) as client:
        with pytest.raises(ToolError, match="one-time code"):
            await client.call_tool("execute_plan", {"plan_id": plan.id})
    assert (await plans.get_plan(rt, plan.id)).status == "pending_approval"
    async with running_infra_worker(svc), \
            Client(server, mode="legacy", elicitation_handler=form(pyotp.TOTP(SECRET).now())) as client:
        result = (await client.call_tool("execute_plan", {"plan_id": plan.id})).structured_content
    assert result["status"] == "succeeded"


async def test_chiffon_approve_needs_the_code_and_setup_prints_an_authenticator_uri(
        rt: Runtime, cli_env: dict[str, str], repo: Path) -> None:
    await rt.store.pool.execute("DELETE FROM totp_used")  # this test may use the current code once
    env = {**cli_env, "CHIFFON_APPROVALS__TOTP_SECRET": SECRET}
    plan_id = json.loads(chiffon(env, "run", "deploy redis", "--repo", str(repo), "--json").stdout)["plan_id"]
    refused = chiffon(env, "approve", plan_id, "--yes")
    assert refused.returncode == 2 and "one-time code" in refused.stderr
    assert chiffon(env, "approve", plan_id, "--yes", "--code", pyotp.TOTP(SECRET).now()).returncode == 0
    setup = chiffon(cli_env, "totp", "setup", "--account", "ops")
    assert setup.returncode == 0 and "otpauth://totp/chiffon:ops?secret=" in setup.stdout
