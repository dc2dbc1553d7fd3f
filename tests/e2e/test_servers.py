"""Servers started as subprocesses and driven by real clients over stdio."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastmcp import Client
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
