"""What the tasks server and ``chiffon worker`` need, opened once: roles, queue, team and workers.

The agents' tools are whatever server the composition root hands in (the
orchestrator's ansible, memory and plan tools) plus the repo tools, served
in-process by one FastMCP server that agents reach only through
:class:`~servers.tasks.tools.ScopedTools`. This package never builds that server itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastmcp import FastMCP

from chiffon.servers.tasks.repo import Workspaces, create_repo_server
from chiffon.servers.tasks.roles import PIPELINE, Role, check_task_inputs, load_roles
from chiffon.shared.errors import InvalidInput
from chiffon.shared.queue import INFRA, NOOP, InputCheck, TaskQueue, TaskWorker
from chiffon.shared.runtime import Runtime, running

if TYPE_CHECKING:
    from chiffon.servers.tasks.team import Team

log = logging.getLogger(__name__)

AGENT_KINDS = ("agent", PIPELINE)  # the queue kinds of role agents: one role, or the pipeline of roles


@dataclass
class TasksService:
    """Roles and the queue: what the tasks tools need (workers run the agents)."""

    rt: Runtime
    roles: dict[str, Role]
    queue: TaskQueue


def agent_checks(role_names: Iterable[str], check_inputs: InputCheck | None = None) -> dict[str, InputCheck]:
    """The queue's input checks of the agent kinds (:data:`AGENT_KINDS`): a role not in ``role_names`` is refused
    (the roles are listed; none given: any role), then whatever ``check_inputs(role, inputs)`` refuses."""
    names = frozenset(role_names)

    def check(role: str, inputs: dict[str, Any] | None) -> None:
        if names and role not in names:
            raise InvalidInput("role", f"unknown role {role!r}; roles: {', '.join(sorted(names))}")
        if check_inputs is not None:
            check_inputs(role, inputs)

    return dict.fromkeys(AGENT_KINDS, check)


def agent_queue(rt: Runtime, roles: dict[str, Role]) -> TaskQueue:
    """The queue as the agents' tools and CLI submit to it: it refuses unknown roles and test commands a role may
    not run (:func:`~chiffon.servers.tasks.roles.check_task_inputs`)."""
    return TaskQueue(rt, checks=agent_checks([*roles, PIPELINE], functools.partial(check_task_inputs, roles)))


def check_roles(roles: dict[str, Role], wanted: Iterable[str]) -> list[str]:
    """``wanted`` validated against the role files (plus ``pipeline``, ``noop`` and ``infra``: plan runs).

    Raises:
        InvalidInput: an unknown role; the known ones are listed.
    """
    known = {*roles, PIPELINE, NOOP, INFRA}
    names = [w.strip() for w in wanted if w.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidInput("roles", f"unknown role(s) {', '.join(unknown)}; roles: {', '.join(sorted(known))}")
    return names


@contextlib.asynccontextmanager
async def open_team(rt: Runtime, roles: dict[str, Role], router: Any,
                    tools: FastMCP | None = None) -> AsyncIterator[Team]:
    """The team over an in-process tool server: ``tools`` (given by the composition root; None: the repo
    tools only) plus the repo tools under ``repo_``; closed on exit."""
    from chiffon.servers.tasks.team import Team
    from chiffon.servers.tasks.tools import Toolbox

    server = FastMCP("chiffon-agent-tools")
    if tools is not None:
        server.mount(tools)
    workspaces = Workspaces(rt.settings.home / "worktrees")
    server.mount(create_repo_server(workspaces, rt.settings.tasks.test_timeout_s, sandbox=rt.settings.tasks.sandbox,
                                    hidden=[rt.settings.home, Path.home() / ".ssh"]), namespace="repo")
    toolbox = await Toolbox(server).start()
    try:
        yield Team(router, toolbox, roles, workspaces)
    finally:
        await toolbox.aclose()


@contextlib.asynccontextmanager
async def running_task_worker(rt: Runtime, team: Team | None, roles: Iterable[str] | None = None, *,
                              concurrency: int | None = None, enabled: bool = True) -> AsyncIterator[TaskWorker | None]:
    """Run a :class:`TaskWorker` for the block (embedded mode, ``chiffon worker``); bounded shutdown."""
    if not enabled:
        yield None
        return
    handlers = team.handlers() if team is not None else {}
    serve = list(roles) if roles is not None else ([*team.roles, PIPELINE] if team is not None else [])
    async with running(TaskWorker(rt, handlers, serve, concurrency=concurrency), "chiffon-task-worker") as worker:
        yield worker


@contextlib.asynccontextmanager
async def open_tasks(rt: Runtime, router: Any = None, *, tools: FastMCP | None = None,
                     worker: bool | None = None, start_delay_s: float = 0.0) -> AsyncIterator[TasksService]:
    """Roles and queue; with a router and ``worker`` (default: ``worker_in_process``), an in-process worker
    whose agents use ``tools`` (see :func:`open_team`).

    The worker and its team start in the background, ``start_delay_s`` after this opens: the caller (an MCP
    server answering an IDE's first ``initialize`` and ``tools/list``) neither waits for nor competes with the
    agent loop's imports and its in-process tool client (about 0.5 s of imports). Tasks submitted meanwhile
    wait in the queue. A worker that fails to start is logged, and the tasks wait for another worker
    (``chiffon worker``).

    Raises:
        ConfigError: a bad role file (named, with the field).
    """
    roles = load_roles()
    queue = agent_queue(rt, roles)
    run_worker = rt.settings.worker_in_process if worker is None else worker
    if router is None or not run_worker:
        yield TasksService(rt, roles, queue)
        return

    async def serve_team() -> None:
        await asyncio.sleep(start_delay_s)
        try:
            async with open_team(rt, roles, router, tools) as team, running_task_worker(rt, team):
                await asyncio.Event().wait()
        except Exception:
            log.exception("the in-process agent worker could not start; tasks wait for `chiffon worker`")

    background = asyncio.create_task(serve_team(), name="chiffon-agent-team")
    try:
        yield TasksService(rt, roles, queue)
    finally:
        background.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await background
