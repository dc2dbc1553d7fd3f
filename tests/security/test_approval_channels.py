"""Attack 6: approvals that no human saw. `chiffon approve` needs a terminal; tool replies never tell the
model to approve."""

from __future__ import annotations

import json
from pathlib import Path

from fastmcp import Client

from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.runtime import Runtime
from tests.e2e.test_cli import chiffon


def test_approve_without_a_terminal_is_refused_and_the_plan_stays_pending(cli_env: dict[str, str],
                                                                          repo: Path) -> None:
    plan_id = json.loads(chiffon(cli_env, "run", "deploy redis", "--repo", str(repo), "--json").stdout)["plan_id"]
    proc = chiffon(cli_env, "approve", plan_id)
    assert proc.returncode == 2 and "asks on a terminal, and there is none" in " ".join(proc.stderr.split())
    status = chiffon(cli_env, "status", plan_id)
    assert "pending_approval" in status.stdout


async def test_the_awaiting_reply_never_tells_the_model_to_run_chiffon_approve(rt: Runtime, repo: Path) -> None:
    async with Client(create_orchestrator(AnsibleService.for_runtime(rt, repo))) as client:
        plan = (await client.call_tool("ansible_check", {"playbook": "echo-message.yml"})).structured_content
        reply = (await client.call_tool("execute_plan", {"plan_id": plan["id"]})).structured_content
    assert reply["status"] == "awaiting_approval"
    assert "chiffon approve" not in reply["message"] and "Do not approve it yourself" in reply["message"]
