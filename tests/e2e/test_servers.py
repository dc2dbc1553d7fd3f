"""Servers started as subprocesses and driven by real clients over stdio."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.messages import MessageHandler
from fastmcp.client.transports import StdioTransport

from tests.conftest import CHECKOUT

BIN = Path(sys.executable).parent
INSPECTOR = CHECKOUT / "node_modules" / ".bin" / "mcp-inspector"


async def test_chiffon_serve_over_stdio_lists_and_calls_tools(cli_env: dict[str, str], repo: Path) -> None:
    transport = StdioTransport(command=str(BIN / "chiffon"), args=["serve", "--repo", str(repo)], env=cli_env,
                               cwd=str(CHECKOUT))
    async with Client(transport) as client:
        names = {t.name for t in await client.list_tools()}
        listed = await client.call_tool("ansible_list_playbooks", {})
    assert {"plan_request", "execute_plan", "ansible_list_playbooks"} <= names
    assert "deploy-uptime-kuma.yml" in {p["name"] for p in listed.structured_content["result"]}


class ListChanges(MessageHandler):
    def __init__(self) -> None:
        self.seen = 0

    async def on_tool_list_changed(self, message: object) -> None:
        self.seen += 1


async def served(env: dict[str, str], repo: Path, *, call: bool = False,
                 changes: ListChanges | None = None) -> tuple[dict, list[dict], list[dict]]:
    """``chiffon serve``'s initialize answer and its tools/list answer (wire form); with ``call``, a tool call
    (which waits for the composed server) and the tools/list answer after it."""
    transport = StdioTransport(command=str(BIN / "chiffon"), args=["serve", "--repo", str(repo)], env=env,
                               cwd=str(CHECKOUT))
    # list_changed reaches a client of the handshake era unasked (a modern one listens: subscriptions/listen)
    async with Client(transport, message_handler=changes, mode="legacy" if changes else "auto") as client:
        init = {"protocol": client.protocol_version, "instructions": client.instructions,
                **{k: getattr(client, k).model_dump(mode="json", by_alias=True, exclude_none=True)
                   for k in ("server_info", "server_capabilities")}}
        tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in await client.list_tools()]
        after = tools
        if call:
            await client.call_tool("plan_status", {"plan_id": "no-such-plan"}, raise_on_error=False)
            after = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in await client.list_tools()]
    return init, tools, after


async def test_serve_answers_from_declarations_what_the_composed_server_answers(cli_env: dict[str, str],
                                                                                 repo: Path) -> None:
    declarations = Path(cli_env["CHIFFON_HOME"]) / "cache" / "serve-tools-ansible-memory.json"
    declarations.unlink(missing_ok=True)
    composed = await served(cli_env, repo)  # first start: the composed server answers, as before declarations
    assert declarations.exists()
    declared = await served(cli_env, repo, call=True)  # answered from the declarations, then composed
    assert declared[0] == composed[0]  # initialize: name, version, instructions, capabilities
    assert declared[1] == composed[1]  # names, titles, descriptions, input and output schemas, annotations
    assert declared[2] == composed[1]
    assert {"plan_request", "execute_plan", "ansible_list_playbooks", "memory_recall"} <= {t["name"] for t in composed[1]}


async def test_stale_declarations_are_replaced_by_what_the_server_answers(cli_env: dict[str, str], repo: Path) -> None:
    declarations = Path(cli_env["CHIFFON_HOME"]) / "cache" / "serve-tools-ansible-memory.json"
    declarations.unlink(missing_ok=True)
    _, real, _ = await served(cli_env, repo)
    stored = json.loads(declarations.read_text())
    stored["tools_list"]["tools"] = stored["tools_list"]["tools"][1:]  # as if a tool had been added since
    declarations.write_text(json.dumps(stored))
    changes = ListChanges()
    _, stale, after = await served(cli_env, repo, call=True, changes=changes)
    assert len(stale) == len(real) - 1
    assert changes.seen == 1  # the client is told to list again
    assert after == real  # once composed, the real server answers
    assert json.loads(declarations.read_text())["tools_list"]["tools"] == real


async def tool_names(env: dict[str, str], *args: str) -> set[str]:
    transport = StdioTransport(command=str(BIN / "chiffon"), args=["serve", *args], env=env, cwd=str(CHECKOUT))
    async with Client(transport) as client:
        return {t.name for t in await client.list_tools()}


async def test_serve_exposes_only_the_toolsets_asked_for(cli_env: dict[str, str]) -> None:
    default = await tool_names(cli_env)
    every = await tool_names(cli_env, "--toolsets", "all")
    only_tasks = await tool_names(cli_env, "--toolsets", "tasks")
    prefixes = {n.split("_", 1)[0] for n in every}
    assert {"ansible", "memory", "llm", "voice", "tasks"} <= prefixes
    assert {n.split("_", 1)[0] for n in default - {"plan_request", "execute_plan", "plan_status", "audit_query", "errors"}} \
        == {"ansible", "memory"}
    assert {"plan_request", "execute_plan", "plan_status", "audit_query"} <= only_tasks
    assert any(n.startswith("tasks_") for n in only_tasks) and not any(n.startswith("ansible_") for n in only_tasks)
    assert default < every
    bad = subprocess.run([str(BIN / "chiffon"), "serve", "--toolsets", "ansible,shell"], env=cli_env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown: shell" in bad.stderr


async def test_chiffon_ansible_runs_alone_over_stdio(cli_env: dict[str, str], repo: Path) -> None:
    transport = StdioTransport(command=str(BIN / "chiffon-ansible"), args=["--repo", str(repo)], env=cli_env)
    async with Client(transport) as client:
        found = await client.call_tool("find_playbooks", {"request": "install redis", "k": 1})
    assert found.structured_content["result"][0]["playbook"] == "deploy-redis.yml"


def inspector(cli_env: dict[str, str], repo: Path, *args: str) -> dict:
    if not INSPECTOR.exists():
        pytest.fail("MCP Inspector missing: run `npm install` (the README's test command does)")
    proc = subprocess.run(
        [str(INSPECTOR), "--cli", "--connect-timeout", "200000", str(BIN / "chiffon"), "serve", "--repo", str(repo),
         *args],
        env={**cli_env, "PATH": f"{BIN}:{cli_env['PATH']}"}, capture_output=True, text=True, timeout=240,
        cwd=CHECKOUT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_mcp_inspector_lists_the_orchestrator_tools(cli_env: dict[str, str], repo: Path) -> None:
    tools = {t["name"] for t in inspector(cli_env, repo, "--method", "tools/list")["tools"]}
    assert {"plan_request", "execute_plan", "plan_status", "audit_query", "ansible_list_playbooks"} <= tools


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_mcp_inspector_calls_ansible_list_playbooks(cli_env: dict[str, str], repo: Path) -> None:
    result = inspector(cli_env, repo, "--method", "tools/call", "--tool-name", "ansible_list_playbooks")
    assert result.get("isError") is not True
    names = {p["name"] for p in result["structuredContent"]["result"]}
    assert {"deploy-uptime-kuma.yml", "deploy-redis.yml", "backup-postgres.yml", "cleanup-disk.yml"} <= names


async def test_chiffon_tasks_runs_alone_over_stdio(cli_env: dict[str, str]) -> None:
    from fastmcp.exceptions import ToolError

    transport = StdioTransport(command=str(BIN / "chiffon-tasks"), args=[], env=cli_env)
    async with Client(transport) as client:
        roles = (await client.call_tool("roles", {})).structured_content["result"]
        with pytest.raises(ToolError, match="unknown role 'wizard'"):
            await client.call_tool("submit_task", {"role": "wizard", "goal": "conjure a cluster"})
    assert {r["name"] for r in roles} >= {"product-manager", "developer", "qa", "pipeline"}
