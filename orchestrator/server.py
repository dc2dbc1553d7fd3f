"""MCP server ``chiffon``: plan a request, get a human's approval, run it, audit it.

Mounts ``chiffon-ansible`` under the namespace ``ansible`` (its tools appear as
``ansible_list_playbooks``...) and ``chiffon-llm`` under ``llm`` (``llm_chat``,
``llm_route``...), and adds the orchestration tools.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING

from fastmcp import FastMCP

from chiffon.orchestrator.plan_tools import add_plan_tools
from chiffon.orchestrator.record_tools import add_record_tools
from chiffon.orchestrator.toolsets import INSTRUCTIONS, TOOLSETS
from chiffon.servers.ansible.server import create_ansible_server
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ChiffonError, InvalidInput
from chiffon.shared.mcp import ChiffonErrors

if TYPE_CHECKING:
    from chiffon.servers.llm.router import Router
    from chiffon.servers.memory.service import MemoryService
    from chiffon.servers.tasks.service import TasksService
    from chiffon.servers.voice.service import VoiceService

log = logging.getLogger(__name__)


def mount_tasks(mcp: FastMCP, tasks: TasksService) -> None:
    """Mount ``chiffon-tasks`` over ``tasks`` as ``tasks_*`` (after the fact, once the team has the tools)."""
    from chiffon.servers.tasks.server import create_tasks_server

    mcp.mount(create_tasks_server(tasks), namespace="tasks")


def create_orchestrator(svc: AnsibleService, router: Router | None = None, memory: MemoryService | None = None,
                        voice: VoiceService | None = None, tasks: TasksService | None = None, *,
                        toolsets: Collection[str] = TOOLSETS) -> FastMCP:
    """The ``chiffon`` server: the orchestration tools, plus the ansible server mounted as ``ansible``,
    ``chiffon-llm`` over ``router`` as ``llm``, ``chiffon-memory`` as ``memory``, ``chiffon-voice`` as
    ``voice`` and ``chiffon-tasks`` as ``tasks``, each when given and named in ``toolsets`` (see
    :data:`TOOLSETS`). Memory keeps recording requests and plans whether or not its tools are mounted."""
    unknown = set(toolsets) - set(TOOLSETS)
    if unknown:
        raise InvalidInput("toolsets", f"unknown: {', '.join(sorted(unknown))}; choose from {', '.join(TOOLSETS)}")
    rt = svc.rt  # svc comes whole from the composition root (run_plan, notify_drift): it is never patched here
    mcp = FastMCP(
        "chiffon",
        instructions=INSTRUCTIONS,
        mask_error_details=True,
    )
    mcp.add_middleware(ChiffonErrors())
    if "ansible" in toolsets:
        mcp.mount(create_ansible_server(svc), namespace="ansible")
    if router is not None and "llm" in toolsets:
        from chiffon.servers.llm.server import create_llm_server

        mcp.mount(create_llm_server(router), namespace="llm")
    if voice is not None and "voice" in toolsets:
        from chiffon.servers.voice.server import create_voice_server

        mcp.mount(create_voice_server(voice), namespace="voice")
    if tasks is not None and "tasks" in toolsets:
        mount_tasks(mcp, tasks)
    playbooks = None
    if memory is not None:
        from chiffon.orchestrator.playbook_memory import PlaybookIndex

        if "memory" in toolsets:
            from chiffon.servers.memory.server import create_memory_server

            mcp.mount(create_memory_server(memory), namespace="memory")
        playbooks = PlaybookIndex(memory.vectors)

    async def record(text: str, kind: str, plan_id: str) -> None:
        """Keep the request, plan or result in the shared ``conversations`` memory (best effort)."""
        if memory is None:
            return
        from chiffon.servers.memory.vectors import Identity

        try:
            await memory.vectors.remember(text, "shared", Identity(), metadata={"kind": kind, "plan_id": plan_id,
                                                                                "source": f"orchestrator:{kind}"})
        except ChiffonError as exc:  # memory down must not stop infrastructure work
            log.warning("could not record %s %s in memory: %s", kind, plan_id, exc)

    add_plan_tools(mcp, svc, router=router, playbooks=playbooks, record=record)
    add_record_tools(mcp, rt)

    from chiffon.orchestrator.api import mount_api

    mount_api(mcp, svc, router=router, playbooks=playbooks, record=record)  # /api/v1 beside /mcp over HTTP
    return mcp
