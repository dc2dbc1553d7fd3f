"""The composition root: the one place that builds servers and hands them to each other.

Servers never import ``orchestrator`` or build one another: the agents of ``chiffon-tasks`` get
their tools (ansible, memory, plans) from here, as a FastMCP server, and an agent with
``infra.run`` reaches the same ``execute_plan`` (queue, host wait, approval) as the IDE.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fastmcp import FastMCP

from chiffon.orchestrator.server import DEFAULT_TOOLSETS, create_orchestrator, mount_tasks
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.config import Settings
from chiffon.shared.runtime import Runtime

if TYPE_CHECKING:
    from chiffon.servers.memory.service import MemoryService


# What an IDE's first requests need is ready at once; what only later calls need (the agent worker, the
# playbook-memory sync: MiniLM and Chroma) starts this long after, so it does not compete with them.
BACKGROUND_START_S = 2.0


@dataclass
class Composed:
    """What :func:`open_orchestrator` opened: the server to serve and the services behind it."""

    server: FastMCP
    ansible: AnsibleService
    memory: MemoryService


@contextlib.asynccontextmanager
async def open_orchestrator(rt: Runtime, repo: Path | None = None,
                            toolsets: Collection[str] = DEFAULT_TOOLSETS) -> AsyncIterator[Composed]:
    """What ``chiffon serve`` exposes, opened once: the ansible service with its in-process infra worker,
    router, memory, voice and tasks, whose agents use the orchestrator's tools over the same ansible service
    and memory (:func:`agent_tools`). The served server mounts the servers named in ``toolsets``.

    Closes everything on exit. Raises InvalidInput for an unknown toolset.
    """
    from chiffon.orchestrator.incidents import running_correlator
    from chiffon.orchestrator.notify import running_notifier
    from chiffon.orchestrator.runs import running_infra_worker
    from chiffon.servers.llm.router import open_router
    from chiffon.servers.memory.service import open_memory
    from chiffon.servers.tasks.service import open_tasks
    from chiffon.servers.voice.service import open_voice

    svc = AnsibleService.for_runtime(rt, repo)
    async with running_infra_worker(svc, rt.settings.worker_in_process), open_router(rt) as router, \
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
    ansible and memory servers over ``svc`` (default: a service over the configured repo), without the LLM,
    voice and tasks servers, whatever toolsets the IDE was given."""
    return create_orchestrator(svc or AnsibleService.for_runtime(rt), None, memory,  # type: ignore[arg-type]
                               toolsets=("ansible", "memory"))


async def _serve_ansible(settings: Settings, args: argparse.Namespace) -> None:
    from chiffon.orchestrator.incidents import notify_humans
    from chiffon.orchestrator.runs import dispatch_run, running_infra_worker
    from chiffon.servers.ansible.server import create_ansible_server
    from chiffon.shared import tokens
    from chiffon.shared.mcp import serve
    from chiffon.shared.runtime import open_runtime

    async with open_runtime(settings) as rt:
        svc = AnsibleService.for_runtime(rt, args.repo)
        svc.run_plan = dispatch_run
        svc.notify_drift = functools.partial(notify_humans, rt, "drift")  # new drift reaches the humans at once
        async with running_infra_worker(svc, settings.worker_in_process):
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
    from chiffon.servers.tasks.queue import PRIORITIES, stream_for
    from chiffon.servers.tasks.roles import PIPELINE, load_roles

    return tuple(stream_for(role, p) for role in [*load_roles(), PIPELINE] for p in PRIORITIES)


async def refresh_metrics(rt: Runtime) -> None:
    """Queue depth of the infra and agent streams, Redis memory and host states, for a ``/metrics`` scrape."""
    from chiffon.servers.tasks.queue import GROUP, INFRA, PRIORITIES, stream_for
    from chiffon.shared import metrics

    agents = _agent_streams()
    infra = tuple(stream_for(INFRA, p) for p in PRIORITIES)
    await metrics.refresh_shared(rt.bus, [*infra, *agents], dict.fromkeys([*infra, *agents], GROUP),
                                 sorted(rt.settings.hosts), rt.settings.hostd.assume_available)
    from chiffon.servers.ansible.drift import refresh_gauge

    try:  # the newest drift reports (the timer's `chiffon drift` has exited): a scrape answers even without them
        await refresh_gauge(rt)
    except Exception as exc:
        logging.getLogger(__name__).warning("drift gauge not refreshed: %s", exc)
