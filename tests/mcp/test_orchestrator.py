"""The whole flow through the real MCP protocol (in-memory fastmcp.Client)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from chiffon.orchestrator.compose import open_infra
from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.runtime import Runtime
from tests.conftest import KUMA_REQUEST


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(rt: Runtime, repo: Path) -> AsyncIterator[FastMCP]:
    async with open_infra(rt, repo, worker=True) as svc:  # built whole: ansible_run takes the one run path
        yield create_orchestrator(svc)


def answering(approve: bool, seen: list[str]):  # type: ignore[no-untyped-def]
    async def handler(message: str, response_type: Any, params: Any, context: Any) -> dict[str, Any]:
        seen.append(message)
        return {"approve": approve, "reason": "looks right" if approve else "no"}

    return handler


async def channel_of(rt: Runtime, plan_id: str) -> str:
    return await rt.store.pool.fetchval("SELECT channel FROM approvals WHERE plan_id=$1", plan_id)


async def test_flow_with_elicitation_on_a_handshake_era_client(server: FastMCP, rt: Runtime, targets: Path) -> None:
    seen: list[str] = []
    async with Client(server, mode="legacy", elicitation_handler=answering(True, seen)) as client:
        plan = (await client.call_tool("plan_request", {"request": KUMA_REQUEST})).structured_content
        assert plan["playbook"] == "deploy-uptime-kuma.yml" and plan["status"] == "pending_approval"
        result = (await client.call_tool("execute_plan", {"plan_id": plan["id"]})).structured_content
    assert "Playbook: deploy-uptime-kuma.yml" in seen[0] and "hosts: east" in seen[0] and "Risk:" in seen[0]
    assert result["status"] == "succeeded"  # Ansible's exit; no Docker engine here, so not what was asked for:
    assert result["outcome"] == "partial" and result["message"].startswith("partial: Uptime Kuma is not running")
    assert len(result["run"]["monitors"]) == 8
    assert await channel_of(rt, plan["id"]) == "mcp-elicitation"
    assert (targets / "east" / "uptime-kuma" / "monitors.json").is_file()


async def test_flow_with_the_guard_pattern_on_a_modern_client(server: FastMCP, rt: Runtime) -> None:
    seen: list[str] = []
    async with Client(server, mode="2026-07-28", elicitation_handler=answering(True, seen)) as client:
        plan = (await client.call_tool("plan_request", {"request": "deploy redis"})).structured_content
        result = (await client.call_tool("execute_plan", {"plan_id": plan["id"]})).structured_content
    assert result["status"] == "succeeded" and seen
    assert await channel_of(rt, plan["id"]) == "mcp-guard"


async def test_declining_in_the_dialog_rejects_and_runs_nothing(server: FastMCP, rt: Runtime) -> None:
    async with Client(server, mode="legacy", elicitation_handler=answering(False, [])) as client:
        plan = (await client.call_tool("ansible_check", {"playbook": "echo-message.yml"})).structured_content
        result = (await client.call_tool("execute_plan", {"plan_id": plan["id"]})).structured_content
    assert result["status"] == "rejected" and result["run"] is None
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan["id"]) == 0


async def test_client_without_elicitation_gets_awaiting_approval_then_out_of_band_works(
    server: FastMCP, rt: Runtime
) -> None:
    async with Client(server, mode="legacy") as client:
        plan = (await client.call_tool("ansible_check", {"playbook": "echo-message.yml"})).structured_content
        waiting = (await client.call_tool("execute_plan", {"plan_id": plan["id"]})).structured_content
        assert waiting["status"] == "awaiting_approval" and plan["id"] in waiting["message"]
        assert "chiffon approve" not in waiting["message"]  # the model is told to ask the human, not to approve
        assert (await plans.get_plan(rt, plan["id"])).status == "pending_approval"
        await plans.decide(rt, plan["id"], "approved", approver="operator", channel="cli")  # what `chiffon approve` does
        done = (await client.call_tool("execute_plan", {"plan_id": plan["id"]})).structured_content
        status = (await client.call_tool("plan_status", {"plan_id": plan["id"]})).structured_content
    assert done["status"] == "succeeded"
    assert status["approval"]["channel"] == "cli" and status["run"]["status"] == "succeeded"


async def test_already_run_plan_is_refused(server: FastMCP, rt: Runtime) -> None:
    async with Client(server, mode="legacy", elicitation_handler=answering(True, [])) as client:
        plan = (await client.call_tool("ansible_check", {"playbook": "echo-message.yml"})).structured_content
        await client.call_tool("execute_plan", {"plan_id": plan["id"]})
        with pytest.raises(ToolError, match="already ran"):
            await client.call_tool("execute_plan", {"plan_id": plan["id"]})


async def test_ansible_run_refuses_an_unapproved_plan(server: FastMCP) -> None:
    async with Client(server) as client:
        plan = (await client.call_tool("ansible_check", {"playbook": "echo-message.yml"})).structured_content
        with pytest.raises(ToolError, match="not been approved"):
            await client.call_tool("ansible_run", {"plan_id": plan["id"]})


async def test_ansible_run_goes_through_the_queue_like_execute_plan(server: FastMCP, rt: Runtime) -> None:
    async with Client(server) as client:
        plan = (await client.call_tool("ansible_check", {"playbook": "echo-message.yml"})).structured_content
        await plans.decide(rt, plan["id"], "approved", approver="tester", channel="cli")
        result = (await client.call_tool("ansible_run", {"plan_id": plan["id"]})).structured_content
    assert result["status"] == "succeeded"
    queued = await rt.store.pool.fetch("SELECT kind, role, status FROM queue_tasks WHERE inputs->>'plan_id' = $1",
                                       plan["id"])
    assert [tuple(r) for r in queued] == [("infra", "infra", "succeeded")]  # the one run path: a queued task


async def test_no_tool_can_approve_by_default(server: FastMCP) -> None:
    async with Client(server) as client:
        names = {t.name for t in await client.list_tools()}
    assert not any("approve" in n for n in names)
    assert {"plan_request", "execute_plan", "plan_status", "audit_query", "ansible_list_playbooks",
            "ansible_find_playbooks", "ansible_check", "ansible_run", "ansible_run_events",
            "ansible_suggest_improvements", "ansible_new_playbook", "ansible_inventory",
            "ansible_describe_playbook"} <= names


async def test_annotations_mark_read_only_and_destructive_tools(server: FastMCP) -> None:
    async with Client(server) as client:
        tools = {t.name: t.annotations for t in await client.list_tools()}
    assert tools["ansible_list_playbooks"].read_only_hint is True
    assert tools["ansible_check"].read_only_hint is False  # check_mode: false tasks run for real
    assert tools["plan_request"].read_only_hint is False and tools["plan_request"].destructive_hint is False
    assert tools["execute_plan"].destructive_hint is True and tools["ansible_run"].destructive_hint is True


async def test_run_is_recorded_in_postgres_and_audit(server: FastMCP, rt: Runtime) -> None:
    async with Client(server, mode="legacy", elicitation_handler=answering(True, [])) as client:
        plan = (await client.call_tool("ansible_check", {"playbook": "echo-message.yml"})).structured_content
        result = (await client.call_tool("execute_plan", {"plan_id": plan["id"]})).structured_content
        events = (await client.call_tool("ansible_run_events", {"run_id": result["run"]["run_id"]})).structured_content
        audit = (await client.call_tool("audit_query", {"plan_id": plan["id"]})).structured_content
    tasks = [e["task"] for e in events["result"]]
    assert tasks == ["Create the target directory", "Write the message"]
    assert [r["kind"] for r in audit["result"]] == ["run", "approval", "plan"]
    assert rt.audit.exists(result["run"]["audit_commit"])
    assert audit["result"][0]["commit"] == result["run"]["audit_commit"]


@pytest.mark.parametrize(
    ("tool", "args", "message"),
    [
        ("ansible_check", {"playbook": "../../etc/passwd"}, "outside the IaC repo"),
        ("ansible_check", {"playbook": "/etc/passwd"}, "absolute"),
        ("ansible_describe_playbook", {"playbook": "deploy-nextcloud.yml"}, "not in"),
        ("plan_request", {"request": "bake a chocolate cake"}, "Closest playbooks"),
        ("plan_request", {"request": ""}, "request: is empty"),
        ("execute_plan", {"plan_id": "plan-0000000000"}, "no plan"),
        ("ansible_check", {"playbook": "deploy-redis.yml", "limit": "nas"}, "not a host or group"),
        ("audit_query", {"since": "yesterday-ish"}, "since"),
        ("ansible_new_playbook", {"kind": "cron", "service": "x", "host": "east"}, "kind"),
    ],
)
async def test_bad_input_gets_a_clear_error(server: FastMCP, tool: str, args: dict[str, Any], message: str) -> None:
    async with Client(server) as client:
        with pytest.raises(ToolError, match=message):
            await client.call_tool(tool, args)


async def test_find_playbooks_ranks_with_score_and_reason(server: FastMCP) -> None:
    async with Client(server) as client:
        found = (await client.call_tool("ansible_find_playbooks", {"request": KUMA_REQUEST, "k": 2})).structured_content
    best = found["result"][0]
    assert best["playbook"] == "deploy-uptime-kuma.yml" and 0 < best["score"] <= 1 and "kuma" in best["reason"]


async def test_suggest_improvements_flags_an_unmonitored_portal(rt: Runtime, tmp_path: Path) -> None:
    from tests.conftest import git_commit_all, make_repo

    repo = make_repo(tmp_path / "repo")
    vars_file = repo / "group_vars" / "all.yml"
    vars_file.write_text(vars_file.read_text().replace("    host: homeassistant\n", "    host: homeassistant\n    monitor: false\n"))
    git_commit_all(repo)
    rt.settings.ansible.lint = False
    try:
        async with Client(create_orchestrator(AnsibleService.for_runtime(rt, repo))) as client:
            found = (await client.call_tool("ansible_suggest_improvements",
                                            {"playbook": "deploy-uptime-kuma.yml"})).structured_content
    finally:
        rt.settings.ansible.lint = True
    rules = {(f["rule"], f["message"].split("'")[1]) for f in found["result"] if f["rule"] == "portal-without-monitor"}
    assert rules == {("portal-without-monitor", "Home Assistant")}


async def test_new_playbook_passes_syntax_check(server: FastMCP) -> None:
    async with Client(server) as client:
        made = (await client.call_tool("ansible_new_playbook",
                                       {"kind": "service", "service": "gotify", "host": "east"})).structured_content
    assert made["syntax_ok"] is True and made["written"] is False
    assert made["path"] == "deploy-gotify.yml" and "hosts: east" in made["content"]


async def test_plan_request_on_a_site_playbook_carries_tags_and_the_services_tool_lists_them(
        rt: Runtime, tmp_path: Path) -> None:
    from tests.fixtures import repos

    svc = AnsibleService.for_runtime(rt, repos.site_roles(tmp_path / "site"))
    async with Client(create_orchestrator(svc)) as client:
        plan = (await client.call_tool("plan_request", {"request": "Deploy Jellyfin"})).structured_content
        rows = (await client.call_tool("ansible_services", {"host": "nas"})).structured_content["result"]
    assert (plan["playbook"], plan["tags"], plan["inventory"], plan["blocked_reason"]) == (
        "site.yml", ["jellyfin"], "hosts.ini", None)
    jellyfin = next(r for r in rows if r["service"] == "jellyfin")
    assert jellyfin["tags"] == ["jellyfin"] and jellyfin["targets"] == ["nas"]


async def test_a_server_with_no_repo_says_so_instead_of_planning_the_example(rt: Runtime) -> None:
    async with Client(create_orchestrator(AnsibleService(rt, None))) as client:
        with pytest.raises(ToolError, match="no IaC repo is configured. Set one with CHIFFON_REPO"):
            await client.call_tool("plan_request", {"request": KUMA_REQUEST})
