"""MCP server ``chiffon-tasks``: role agents on a durable queue.

Mounted in the orchestrator as ``tasks`` (``tasks_submit_task``...). Tools only
validate and talk to the queue; agents run in workers (``chiffon worker``, or
in-process in embedded mode).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

from chiffon.servers.tasks.roles import PIPELINE
from chiffon.servers.tasks.service import TasksService
from chiffon.shared.errors import InvalidInput
from chiffon.shared.mcp import ChiffonErrors
from chiffon.shared.queue import PRIORITIES, Kind, Step, TaskRecord

SUBMITS = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)
READS = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
CANCELS = ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False)
MAX_WAIT_S = 600.0


class TaskStatus(BaseModel):
    """A task and its step log."""

    task: TaskRecord
    steps: list[Step] = Field(description="Stored steps after `after_seq`, oldest first.")


def create_tasks_server(svc: TasksService) -> FastMCP:
    """The ``chiffon-tasks`` server over ``svc``."""
    mcp = FastMCP(
        "chiffon-tasks",
        instructions=(
            "Role agents (product manager, architects, developer, QA, UX researcher, platform engineer) working "
            "on a durable queue. submit_task hands a goal to a role, or to 'pipeline' (PM -> architect -> developer "
            "-> QA); task_status shows the step log; task_result waits for the outcome. Agents only use the tools "
            "their role allows, and nothing that changes a machine runs without a human's approval."
        ),
        mask_error_details=True,
    )
    mcp.add_middleware(ChiffonErrors())
    queue = svc.queue

    @mcp.tool(annotations=SUBMITS)
    async def submit_task(
        role: str = Field(description="A role name (see roles) or 'pipeline'."),
        goal: str = Field(description="What the agent should achieve, in plain language."),
        inputs: dict[str, Any] | None = Field(None, description="Context: repo (path of the target git repo), "
                                                                "test_command, files, links..."),
        priority: Literal["high", "normal", "low"] = Field("normal"),
        idempotency_key: str | None = Field(None, description="Resubmitting with the same key returns the same task."),
        session_id: str | None = Field(None, description="Memory session the agents share; default: the task's own."),
    ) -> TaskRecord:
        """Queue a task for a role (or the pipeline); returns it with status queued. Changes no machine."""
        kind: Kind = "pipeline" if role == PIPELINE else "agent"
        return await queue.submit(role, goal, inputs, priority, kind=kind, idempotency_key=idempotency_key,
                                  session_id=session_id)

    @mcp.tool(annotations=READS)
    async def task_status(
        task_id: str = Field(description="Task id from submit_task."),
        after_seq: int = Field(0, ge=0, description="Only steps after this one (to follow a running task)."),
    ) -> TaskStatus:
        """The task (status, attempts, tokens) and its step log: model replies, tool calls, refusals, reviews."""
        return TaskStatus(task=await queue.get(task_id), steps=await queue.steps(task_id, after=after_seq))

    @mcp.tool(annotations=READS)
    async def task_result(
        ctx: Context,
        task_id: str = Field(description="Task id from submit_task."),
        wait_s: float = Field(0, description="Wait up to this long for the task to finish, seconds (0 to 600)."),
    ) -> TaskRecord:
        """The task with its result; with wait_s, progress while it runs and a warning if it is escalated."""
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise InvalidInput("wait_s", f"must be within 0..{MAX_WAIT_S:g}, got {wait_s}")
        loop_time = asyncio.get_running_loop().time
        deadline = loop_time() + wait_s
        seen = 0
        while True:
            task = await queue.get(task_id)
            steps = await queue.steps(task_id, after=seen)
            if steps:
                seen = steps[-1].seq
                await ctx.report_progress(seen, None, f"{steps[-1].role}: {steps[-1].kind}")
            if task.done or loop_time() >= deadline:
                break
            await asyncio.sleep(0.5)
        if task.status == "escalated":
            await ctx.warning(f"task {task_id} needs a human: {task.error} (see `chiffon inbox`)")
        return task

    @mcp.tool(annotations=READS)
    async def list_tasks(
        status: Literal["queued", "running", "succeeded", "failed", "escalated", "cancelled"] | None = Field(None),
        role: str | None = Field(None), session_id: str | None = Field(None),
        limit: int = Field(50, ge=1, le=1000),
    ) -> list[TaskRecord]:
        """Tasks, newest first, filtered by status, role and session."""
        return await queue.list(status=status, role=role, session_id=session_id, limit=limit)

    @mcp.tool(annotations=CANCELS)
    async def cancel_task(
        task_id: str = Field(description="Task id."), reason: str = Field("cancelled by the user"),
    ) -> TaskRecord:
        """Cancel a queued or running task (a running agent stops before its next step). A finished task is
        refused, with its status."""
        return await queue.cancel(task_id, reason)

    @mcp.tool(annotations=READS)
    async def roles() -> list[dict[str, Any]]:
        """Each role: title, description, tool scopes, tier, limits and critic; plus the pipeline."""
        listed = [r.summary() for r in svc.roles.values()]
        listed.append({"name": PIPELINE, "title": "Pipeline", "description": "product-manager (PRP) -> "
                       "architect-systems (design) -> developer (change in a worktree branch) -> qa (tests)",
                       "priorities": list(PRIORITIES)})
        return listed

    return mcp
