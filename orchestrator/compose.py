"""The composition root: the one place that builds services and hands them to each other.

Servers never import ``orchestrator`` or build one another: the agents of ``chiffon-tasks`` get
their tools (ansible, memory, plans) from here, as a FastMCP server, and an agent with
``infra.run`` reaches the same ``execute_plan`` (queue, host wait, approval) as the IDE.

Every entry point opens what it needs here: ``chiffon serve`` :func:`open_orchestrator`, ``chiffon run``,
``execute`` and ``chiffon-ansible`` :func:`open_infra`, ``chiffon worker`` and ``task submit --wait``
:func:`open_agents`, ``chiffon console`` :func:`open_console`; the CLI's reads (drift, undo, doctor)
:func:`infra_service`. Services get their collaborators at construction and are never patched afterwards
(``tests/unit/test_composition.py`` holds that). This module imports only light modules at the top: the CLI
imports it on every command (an IDE starts it per window), and each builder imports what it opens.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chiffon.shared.config import Settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from fastmcp import FastMCP

    from chiffon.servers.ansible.events import TaskEvent
    from chiffon.servers.ansible.execution import RunResult
    from chiffon.servers.ansible.service import AnsibleService
    from chiffon.servers.memory.service import MemoryService
    from chiffon.servers.tasks.roles import Role
    from chiffon.servers.tasks.team import Team
    from chiffon.servers.voice.service import VoiceService
    from chiffon.shared.queue.worker import TaskWorker
    from chiffon.shared.runtime import Runtime


# What an IDE's first requests need is ready at once; what only later calls need (the agent worker, the
# playbook-memory sync: MiniLM and Chroma) starts this long after, so it does not compete with them.
BACKGROUND_START_S = 2.0


async def _run_plan(rt: Runtime, plan_id: str, *, on_event: Callable[[TaskEvent], Awaitable[None]] | None = None,
                    timeout_s: float | None = None) -> RunResult:
    """The one run path, :func:`chiffon.orchestrator.runs.dispatch_run`, imported when a plan runs (the queue
    and worker modules, about 0.2 s, stay off the path of the CLI's reads)."""
    from chiffon.orchestrator.runs import dispatch_run

    return await dispatch_run(rt, plan_id, on_event=on_event, timeout_s=timeout_s)


async def _notify_humans(rt: Runtime, kind: str, title: str, body: dict[str, Any]) -> None:
    """:func:`chiffon.orchestrator.incidents.notify_humans`, imported when there is news to tell."""
    from chiffon.orchestrator.incidents import notify_humans

    await notify_humans(rt, kind, title, body)


def infra_service(rt: Runtime, repo: Path | None = None, inventory: str | None = None) -> AnsibleService:
    """The ansible service over ``repo`` (default ``CHIFFON_REPO``) and ``inventory``, built whole: its ``run``
    tool takes the one run path (``dispatch_run``) and new drift reaches the humans at once (the inbox and
    Apprise). No worker: for reads and plans, or under :func:`open_infra`."""
    from chiffon.servers.ansible.service import AnsibleService

    return AnsibleService.for_runtime(rt, repo, inventory, run_plan=_run_plan,
                                      notify_drift=functools.partial(_notify_humans, rt, "drift"))


@contextlib.asynccontextmanager
async def open_infra(rt: Runtime, repo: Path | None = None, inventory: str | None = None, *,
                     worker: bool | None = None) -> AsyncIterator[AnsibleService]:
    """:func:`infra_service`, with an in-process infra worker (and the plan resumer) running approved plans for the
    block when ``worker`` (default: ``worker_in_process``); bounded shutdown on exit."""
    from chiffon.orchestrator.runs import running_infra_worker

    svc = infra_service(rt, repo, inventory)
    async with running_infra_worker(svc, rt.settings.worker_in_process if worker is None else worker):
        yield svc


@dataclass
class Workers:
    """What :func:`open_agents` runs: the infra worker and the agent worker (None: not asked for), and the agents'
    team (None: the roles served need none)."""

    infra: TaskWorker | None
    agents: TaskWorker | None
    team: Team | None


@contextlib.asynccontextmanager
async def open_agents(rt: Runtime, roles: dict[str, Role] | None = None, serve: Collection[str] | None = None, *,
                      infra: bool = False, concurrency: int | None = None) -> AsyncIterator[Workers]:
    """Queue workers in this process for the block (``chiffon worker``, ``task submit --wait``).

    ``infra``: an infra worker over :func:`infra_service` (approved plans). ``serve``: the agent roles (names from
    ``roles``, default the role files; ``pipeline``, ``noop``) an agent worker serves, at most ``concurrency`` at
    once (default ``tasks.concurrency``); None: every role and the pipeline; empty: no agent worker. Roles other
    than ``noop`` get a team: the router, memory and the orchestrator's tools (:func:`agent_tools`).
    """
    from chiffon.orchestrator.runs import running_infra_worker
    from chiffon.servers.tasks.roles import load_roles
    from chiffon.servers.tasks.service import running_task_worker

    roles = load_roles() if roles is None else roles
    async with contextlib.AsyncExitStack() as stack:
        infra_worker = await stack.enter_async_context(running_infra_worker(infra_service(rt))) if infra else None
        if serve is not None and set(serve) <= {"noop"}:
            agents = await stack.enter_async_context(
                running_task_worker(rt, None, serve, concurrency=concurrency, enabled=bool(serve)))
            yield Workers(infra_worker, agents, None)
            return
        from chiffon.servers.llm.router import open_router
        from chiffon.servers.memory.service import open_memory
        from chiffon.servers.tasks.service import open_team

        router = await stack.enter_async_context(open_router(rt))
        memory = await stack.enter_async_context(open_memory(rt))
        team = await stack.enter_async_context(open_team(rt, roles, router, agent_tools(rt, memory)))
        agents = await stack.enter_async_context(running_task_worker(rt, team, serve, concurrency=concurrency))
        yield Workers(infra_worker, agents, team)


@dataclass
class Console:
    """What :func:`open_console` opened for the console's pages."""

    ansible: AnsibleService
    voice: VoiceService | None  # None: no LLM tier configured, so no voice turns


@contextlib.asynccontextmanager
async def open_console(rt: Runtime, repo: Path | None = None, served: tuple[str, int] | None = None) -> AsyncIterator[Console]:
    """What ``chiffon console`` serves: the ansible service with its in-process infra worker (an approval on the
    console runs without another process when ``worker_in_process``), the router and voice, the incident
    correlator and the notifier (its links point to ``served``, the console's ``(bind, port)``)."""
    from chiffon.orchestrator.incidents import running_correlator
    from chiffon.orchestrator.notify import running_notifier
    from chiffon.servers.llm.router import open_router
    from chiffon.servers.voice.service import open_voice

    async with open_infra(rt, repo) as svc, open_router(rt) as router, open_voice(rt, router) as voice, \
            running_correlator(rt), running_notifier(rt, served):
        yield Console(svc, voice if router.settings.tiers else None)


@dataclass
class Composed:
    """What :func:`open_orchestrator` opened: the server to serve and the services behind it."""

    server: FastMCP
    ansible: AnsibleService
    memory: MemoryService


@contextlib.asynccontextmanager
async def open_orchestrator(rt: Runtime, repo: Path | None = None,
                            toolsets: Collection[str] | None = None) -> AsyncIterator[Composed]:
    """What ``chiffon serve`` exposes, opened once: the ansible service with its in-process infra worker,
    router, memory, voice and tasks, whose agents use the orchestrator's tools over the same ansible service
    and memory (:func:`agent_tools`). The served server mounts the servers named in ``toolsets`` (default:
    :data:`~chiffon.orchestrator.server.DEFAULT_TOOLSETS`).

    Closes everything on exit. Raises InvalidInput for an unknown toolset.
    """
    from chiffon.orchestrator.incidents import running_correlator
    from chiffon.orchestrator.notify import running_notifier
    from chiffon.orchestrator.server import create_orchestrator, mount_tasks
    from chiffon.orchestrator.toolsets import DEFAULT_TOOLSETS
    from chiffon.servers.llm.router import open_router
    from chiffon.servers.memory.service import open_memory
    from chiffon.servers.tasks.service import open_tasks
    from chiffon.servers.voice.service import open_voice

    toolsets = DEFAULT_TOOLSETS if toolsets is None else toolsets
    async with open_infra(rt, repo) as svc, open_router(rt) as router, \
            open_memory(rt) as memory, open_voice(rt, router) as voice, running_correlator(rt), \
            running_notifier(rt):
        server = create_orchestrator(svc, router, memory, voice, toolsets=toolsets)
        async with open_tasks(rt, router, tools=agent_tools(rt, memory, svc), start_delay_s=BACKGROUND_START_S) \
                as tasks:
            if "tasks" in toolsets:
                mount_tasks(server, tasks)
            yield Composed(server, svc, memory)


def agent_tools(rt: Runtime, memory: object | None = None, svc: AnsibleService | None = None) -> FastMCP:
    """The tools a worker's agents may call (each role sees only its scopes): the orchestrator with the
    ansible and memory servers over ``svc`` (default: :func:`infra_service` over the configured repo), without
    the LLM, voice and tasks servers, whatever toolsets the IDE was given."""
    from chiffon.orchestrator.server import create_orchestrator

    return create_orchestrator(svc or infra_service(rt), None, memory,  # type: ignore[arg-type]
                               toolsets=("ansible", "memory"))


async def _serve_ansible(settings: Settings, args: argparse.Namespace) -> None:
    from chiffon.servers.ansible.server import create_ansible_server
    from chiffon.shared import tokens
    from chiffon.shared.mcp import serve
    from chiffon.shared.runtime import open_runtime

    async with open_runtime(settings) as rt, open_infra(rt, args.repo) as svc:
        await serve(create_ansible_server(svc), settings, args.transport, args.host, args.port,
                    **tokens.lookups(rt.store))


def ansible_main(argv: list[str] | None = None) -> None:
    """``chiffon-ansible``: the Ansible MCP server on its own (stdio or HTTP). Its ``run`` tool takes the one
    run path (:func:`~chiffon.orchestrator.runs.dispatch_run`); with ``worker_in_process`` (the default) an
    infra worker runs approved plans in this process."""
    from chiffon.shared.mcp import server_main

    def add_repo(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--repo", type=Path, help="IaC repo (default: CHIFFON_REPO or the `repo` key)")

    server_main("chiffon-ansible", ansible_main.__doc__ or "", _serve_ansible, argv, add_repo)


async def _serve_tasks(settings: Settings, args: argparse.Namespace) -> None:
    from chiffon.servers.llm.router import open_router
    from chiffon.servers.memory.service import open_memory
    from chiffon.servers.tasks.server import create_tasks_server
    from chiffon.servers.tasks.service import open_tasks
    from chiffon.shared import tokens
    from chiffon.shared.mcp import serve
    from chiffon.shared.runtime import open_runtime

    async with open_runtime(settings) as rt, open_router(rt) as router, open_memory(rt) as memory, \
            open_tasks(rt, router, tools=agent_tools(rt, memory)) as tasks:
        await serve(create_tasks_server(tasks), settings, args.transport, args.host, args.port,
                    **tokens.lookups(rt.store))


def tasks_main(argv: list[str] | None = None) -> None:
    """``chiffon-tasks``: the agent tasks MCP server on its own (stdio or HTTP).

    With ``worker_in_process`` (the default) it also runs a worker for every role, whose agents use the
    orchestrator's tools; otherwise start workers with ``chiffon worker``.
    """
    from chiffon.shared.mcp import server_main

    server_main("chiffon-tasks", tasks_main.__doc__ or "", _serve_tasks, argv)


@functools.cache
def _agent_streams() -> tuple[str, ...]:
    """Every agent work stream (role x priority); the role files are read once per process, like the team's."""
    from chiffon.servers.tasks.roles import PIPELINE, load_roles
    from chiffon.shared.queue import PRIORITIES, stream_for

    return tuple(stream_for(role, p) for role in [*load_roles(), PIPELINE] for p in PRIORITIES)


async def refresh_metrics(rt: Runtime) -> None:
    """Queue depth of the infra and agent streams, Redis memory and host states, for a ``/metrics`` scrape."""
    from chiffon.shared import metrics
    from chiffon.shared.queue import GROUP, INFRA, PRIORITIES, stream_for

    agents = _agent_streams()
    infra = tuple(stream_for(INFRA, p) for p in PRIORITIES)
    await metrics.refresh_shared(rt.bus, [*infra, *agents], dict.fromkeys([*infra, *agents], GROUP),
                                 sorted(rt.settings.hosts), rt.settings.hostd.assume_available)
    from chiffon.servers.ansible.drift import refresh_gauge

    try:  # the newest drift reports (the timer's `chiffon drift` has exited): a scrape answers even without them
        await refresh_gauge(rt)
    except Exception as exc:
        logging.getLogger(__name__).warning("drift gauge not refreshed: %s", exc)
