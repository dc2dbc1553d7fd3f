"""chiffon-memory's tools through the orchestrator (mounted as ``memory``), and the server over stdio."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.client.transports import StdioTransport
from fastmcp.exceptions import ToolError

from chiffon.orchestrator.runs import running_infra_worker
from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible.service import AnsibleService
from chiffon.servers.memory.embedders import LocalEmbedder
from chiffon.servers.memory.service import MemoryService
from chiffon.servers.memory.vectors import Identity, VectorMemory, open_client
from chiffon.shared.config import MemorySettings
from chiffon.shared.runtime import Runtime
from tests.conftest import CHECKOUT

BIN = Path(sys.executable).parent


async def test_memory_tools_through_the_orchestrator(rt: Runtime, repo: Path, tmp_path: Path) -> None:
    memory = MemoryService(rt, VectorMemory(open_client(tmp_path, None), LocalEmbedder(), MemorySettings()))
    async with Client(create_orchestrator(AnsibleService.for_runtime(rt, repo), memory=memory)) as c:
        names = {t.name for t in await c.list_tools()}
        assert {"memory_remember", "memory_recall", "memory_history", "memory_append_message", "memory_forget",
                "memory_collections"} <= names
        added = (await c.call_tool("memory_remember", {"text": "Kuma listens on port 3001", "scope": "shared",
                                                       "metadata": {"source": "runbook"}})).structured_content
        hits = (await c.call_tool("memory_recall", {"query": "which port does uptime kuma use?", "k": 1,
                                                    "session_id": "s1"})).structured_content["result"]
        await c.call_tool("memory_append_message", {"session_id": "mcp-s1", "role": "user", "content": "hello"})
        chat = (await c.call_tool("memory_history", {"session_id": "mcp-s1"})).structured_content["result"]
        forgotten = (await c.call_tool("memory_forget", {"ids": [added["id"]]})).structured_content
        with pytest.raises(ToolError, match="scope needs session_id"):
            await c.call_tool("memory_remember", {"text": "private", "scope": "session"})
        with pytest.raises(ToolError, match="filters.colour"):
            await c.call_tool("memory_recall", {"query": "x", "filters": {"colour": "red"}})
    assert added["action"] == "added"
    assert hits[0]["id"] == added["id"] and hits[0]["source"] == "runbook" and hits[0]["score"] > 0.5
    assert chat[0]["content"] == "hello" and forgotten == {"deleted": 1}


async def test_chiffon_memory_serves_over_stdio(cli_env: dict[str, str]) -> None:
    transport = StdioTransport(command=str(BIN / "chiffon-memory"), args=[], env=cli_env, cwd=str(CHECKOUT))
    async with Client(transport) as client:
        listing = (await client.call_tool("collections", {})).structured_content["result"]
    assert {c["name"] for c in listing} == {"conversations", "codebase", "documentation"}


async def test_index_repo_and_search_code_tools(rt: Runtime, repo: Path, tmp_path: Path) -> None:
    memory = MemoryService(rt, VectorMemory(open_client(tmp_path, None), LocalEmbedder(), MemorySettings()))
    rt.settings.memory.index_roots.append(repo.parent)
    seen: list[float] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append(done)

    try:
        server = create_orchestrator(AnsibleService.for_runtime(rt, repo), memory=memory)
        async with Client(server, progress_handler=progress) as c:
            report = (await c.call_tool("memory_index_repo", {"path": str(repo), "collection": "documentation"})
                      ).structured_content
            hits = (await c.call_tool("memory_search_code", {"query": "start the redis container",
                                                             "path_glob": "*.yml", "k": 3})).structured_content["result"]
            with pytest.raises(ToolError, match="outside the allowed roots"):
                await c.call_tool("memory_index_repo", {"path": "/etc"})
    finally:
        rt.settings.memory.index_roots.remove(repo.parent)
    assert report["files_indexed"] >= 10 and seen
    assert hits and all(h["metadata"]["path"].endswith(".yml") for h in hits)
    assert hits[0]["metadata"]["path"] == "deploy-redis.yml"


async def test_orchestrator_records_plans_and_runs_in_memory(rt: Runtime, repo: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMELAB_ROOT", str(tmp_path / "targets"))  # deploy here, not into the session's targets

    memory = MemoryService(rt, VectorMemory(open_client(tmp_path, None), LocalEmbedder(), MemorySettings()))
    svc = AnsibleService.for_runtime(rt, repo)

    async def approve(message, response_type, params, context):  # type: ignore[no-untyped-def]
        return {"approve": True, "reason": "test"}

    async with running_infra_worker(svc), Client(create_orchestrator(svc, memory=memory), mode="legacy",
                                           elicitation_handler=approve) as c:
        plan = (await c.call_tool("plan_request", {"request": "deploy redis"})).structured_content
        await c.call_tool("execute_plan", {"plan_id": plan["id"]})
    hits = await memory.vectors.recall("what happened to the redis deployment?", Identity(),
                                       filters={"plan_id": plan["id"]}, k=5)
    kinds = {h.metadata["kind"]: h.text for h in hits}
    assert set(kinds) == {"plan", "run"}
    assert "deploy-redis.yml" in kinds["plan"] and "succeeded" in kinds["run"]
