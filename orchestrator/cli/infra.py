"""Plans from request to run: ``chiffon run``, ``approve``, ``reject``, ``execute``, ``status``, ``audit``
and ``serve``.

Exit codes: 0 done, 1 the run failed, 2 bad input or a service is unreachable,
3 the plan awaits a human's approval (nothing changed), 4 the plan was rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from chiffon.orchestrator.cli.common import (
    EXIT_AWAITING,
    EXIT_ERROR,
    EXIT_REJECTED,
    ConfigOpt,
    JsonOpt,
    err,
    out,
    parse_vars_or_exit,
    progress_bar,
    run_exit_code,
    run_or_exit,
    settings_or_exit,
    split_csv,
)
from chiffon.orchestrator.cli.render import print_outcome, show_plan, summary
from chiffon.orchestrator.cli.terminal import AskBecomeOpt, AskVaultOpt, ask_code, ask_passwords, pick_on_terminal
from chiffon.shared.errors import ChiffonError
from chiffon.shared.logs import setup_logging

if TYPE_CHECKING:
    from chiffon.servers.ansible import execution, plans
    from chiffon.servers.ansible.events import TaskEvent
    from chiffon.servers.ansible.request import PlanRequest
    from chiffon.servers.ansible.service import AnsibleService
    from chiffon.shared.config import Settings
    from chiffon.shared.runtime import Runtime

app = typer.Typer()


async def _execute(svc: AnsibleService, plan: plans.Plan, as_json: bool) -> execution.RunResult:
    from asyncpg import InterfaceError, PostgresError
    from redis.exceptions import RedisError

    from chiffon.orchestrator.runs import dispatch_run
    from chiffon.shared.errors import BusUnavailable, StoreUnavailable
    from chiffon.shared.health import WATCH_WINDOW_S, watch_parts

    total = len((plan.check_result or {}).get("events", [])) or None
    with progress_bar() as bar:
        task = bar.add_task(f"running {plan.playbook}", total=total)

        async def on_event(event: TaskEvent) -> None:
            bar.update(task, completed=event.seq, description=escape(f"{event.task[:50]} [{event.host}]"))

        run = asyncio.ensure_future(dispatch_run(svc.rt, plan.id, on_event=on_event))
        watch = asyncio.ensure_future(watch_parts(svc.rt))
        try:
            await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # Ctrl-C: the in-process worker stops the run as this unwinds
            run.cancel()
            watch.cancel()
            err.print(escape(f"stopping the run of {plan.id}: Ansible is killed and the run recorded as failed "
                             f"(cancelled); the hosts may be half-changed: check them, `chiffon status {plan.id}`"),
                      highlight=False, soft_wrap=True)
            raise
        if run.done() and not run.cancelled() and isinstance(run.exception(), (OSError, RedisError, PostgresError, InterfaceError)):
            # a connection lost under the wait: the watcher names the part within its window, else it was a blip
            with contextlib.suppress(TimeoutError, StoreUnavailable, BusUnavailable):
                await asyncio.wait_for(asyncio.shield(watch), WATCH_WINDOW_S)
        if watch.done():  # the store or the bus died under the run: say so now, not after the run timeout
            run.cancel()
            lost = watch.exception()
            err.print(f"[bold red]error:[/] {escape(str(lost))} during the run of {plan.id}. " + escape(
                f"Nothing is lost: Ansible finishes what it started in this process and its outcome is kept in "
                f"{svc.rt.settings.runs_dir}/<run>/outcome.json, which is recorded (plan, run and audit) when the "
                f"store is back: `chiffon status {plan.id}`. Nothing runs again without a new plan and approval."),
                      highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_ERROR)
        watch.cancel()
        result = run.result()
    if not as_json:
        print_outcome(result, plan.tags)  # its reasons hold the run's warnings
        if result.monitors is not None:
            out.print(escape(f"monitors rendered: {', '.join(result.monitors)}"))
        if result.failure:
            out.print("[red]failed task[/] " + escape(f"{result.failure.get('task')} on {result.failure.get('host')}: "
                                                      f"{result.failure.get('message')}"))
    return result


@asynccontextmanager
async def _planner_router(rt: Runtime) -> AsyncIterator[Any]:
    """The LLM router when the quick tier is configured for planning, else None (retrieval only)."""
    from chiffon.servers.llm.packaged import effective_llm

    if not (rt.settings.llm.planner and "quick" in effective_llm(rt.settings).tiers):
        yield None
        return
    from chiffon.servers.llm.router import open_router

    async with open_router(rt) as router:
        yield router


@dataclass(frozen=True)
class RequestOptions:
    """What `chiffon run` was given: the request (:class:`~chiffon.servers.ansible.request.PlanRequest`, passed
    whole to :func:`orchestrator.planner.plan_request`) and what only a terminal gives: the one-time ``code`` for
    ``--approve`` and ``typed`` passwords."""

    asked: PlanRequest
    code: str | None = None
    typed: Any = None  # servers.ansible.prompted.Typed: passwords typed at this terminal, held in memory only

    @property
    def repo(self) -> Path | None:
        """The IaC repo asked for (None: CHIFFON_REPO or the `repo` key)."""
        return self.asked.repo

    @property
    def inventory(self) -> str | None:
        """The inventory asked for (None: the one ansible.cfg names)."""
        return self.asked.inventory


async def _run_request(settings: Settings, opts: RequestOptions, approve: bool, as_json: bool) -> int:
    from chiffon.orchestrator.compose import open_infra
    from chiffon.orchestrator.planner import plan_request
    from chiffon.servers.ansible import plans
    from chiffon.shared.runtime import open_runtime

    started = time.perf_counter()
    async with open_runtime(settings) as rt:
        async with open_infra(rt, opts.repo, opts.inventory) as svc:
            async with _planner_router(rt) as router:
                with progress_bar() as bar:
                    quick = router.settings.tiers["quick"].model if router is not None else None
                    task = bar.add_task(escape(f"planning: {quick} chooses the playbook" if quick
                                               else "planning: check mode"), total=None)

                    async def on_check(event: TaskEvent) -> None:
                        bar.update(task, completed=event.seq,
                                   description=escape(f"check: {event.task[:50]} [{event.host}]"))

                    plan = await plan_request(svc, opts.asked, on_event=on_check, router=router, typed=opts.typed,
                                              pick=pick_on_terminal(bar) if sys.stdin.isatty() and not as_json
                                              else None)
            if not as_json:
                show_plan(plan)
            if plan.blocked_reason:
                return _report(plan, "blocked", None, started, as_json,
                               f"plan {plan.id} cannot be approved as-is: {plan.blocked_reason}. Nothing changed.",
                               EXIT_ERROR)
            if approve:
                plan = await plans.decide(rt, plan.id, "approved", approver=plans.default_approver(),
                                          channel=terminal_channel("--approve"), code=opts.code)
            elif sys.stdin.isatty() and not as_json:
                ok = typer.confirm(f"Run plan {plan.id} now?", default=False)
                plan = await plans.decide(rt, plan.id, "approved" if ok else "rejected",
                                          approver=plans.default_approver(), channel=terminal_channel(),
                                          code=ask_code(settings, opts.code) if ok else None)
            else:
                return _report(plan, "awaiting_approval", None, started, as_json,
                               f"plan {plan.id} awaits approval; nothing changed. Approve with "
                               f"`chiffon approve {plan.id}`, then `chiffon execute {plan.id}`.", EXIT_AWAITING)
            if plan.status == "rejected":
                return _report(plan, "rejected", None, started, as_json, f"plan {plan.id} rejected; nothing ran.",
                               EXIT_REJECTED)
            result = await _execute(svc, plan, as_json)
            return _report(plan, result.status, result, started, as_json, None,
                           run_exit_code(result.outcome, result.status))


def _report(plan: plans.Plan, status: str, result: execution.RunResult | None, started: float, as_json: bool,
            note: str | None, code: int) -> int:
    if as_json:
        out.print_json(json.dumps(summary(plan, status, result, started)))
    if note:
        err.print(escape(note), highlight=False, soft_wrap=True)
    return code


@app.command()
def run(
    request: Annotated[str, typer.Argument(help="What should happen, in plain language.")],
    repo: Annotated[Path | None, typer.Option(help="IaC repo (default: CHIFFON_REPO or the `repo` key).")] = None,
    approve: Annotated[bool, typer.Option("--approve", help="Approve the plan yourself, now, without a prompt.")] = False,
    as_json: JsonOpt = False,
    limit: Annotated[str | None, typer.Option(help="--limit host/group pattern.")] = None,
    inventory: Annotated[str | None, typer.Option(
        help="Inventory: a name from `chiffon services`/`chiffon inventories` (prod, local) or a path in the "
             "repo. Default: the one ansible.cfg names.")] = None,
    vault_password_file: Annotated[Path | None, typer.Option(
        help="ansible-vault password file, for repos with encrypted vars.")] = None,
    apply_role: Annotated[str | None, typer.Option(
        help="Plan a generated playbook applying this role (one no playbook applies); needs --apply-to.")] = None,
    apply_to: Annotated[str | None, typer.Option(help="Inventory host or group for --apply-role.")] = None,
    skip_tags: Annotated[str | None, typer.Option(help="--skip-tags, comma-separated tags of the playbook.")] = None,
    extra_var: Annotated[list[str], typer.Option("--extra-var", "-e", help="KEY=VALUE, passed literally.")] = [],  # noqa: B006
    code: Annotated[str | None, typer.Option(
        help="Current one-time code for --approve when TOTP is set up (asked on a terminal otherwise).")] = None,
    secret_var: Annotated[list[str], typer.Option(
        "--secret-var", help="KEY of an -e value that is a secret (never stored or shown; *_password etc. already "
                             "are).")] = [],  # noqa: B006
    ask_vault_pass: AskVaultOpt = False,
    ask_become_pass: AskBecomeOpt = False,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Plan a request (check mode + diff), get approval, run it, record state and audit."""
    setup_logging(verbose)
    typed = ask_passwords(ask_vault_pass, ask_become_pass)
    overrides = {"ansible": {"vault_password_file": vault_password_file}} if vault_password_file else {}
    settings = settings_or_exit(config, **overrides)
    from chiffon.servers.ansible.request import PlanRequest

    asked = PlanRequest(request=request, repo=repo, inventory=inventory, limit=limit, skip_tags=split_csv(skip_tags),
                        extra_vars=parse_vars_or_exit(extra_var), secret_vars=secret_var, apply_role=apply_role,
                        apply_to=apply_to)
    raise typer.Exit(run_or_exit(_run_request(settings, RequestOptions(asked, code=code, typed=typed), approve,
                                              as_json)))


def terminal_channel(flag: str = "") -> str:
    """The channel a terminal decision records: ``terminal[ FLAG] (uid N, not proof of a human)``. A terminal
    proves an account, not a person: a model with a shell types ``y`` into a pseudo-terminal as easily."""
    uid = os.getuid() if hasattr(os, "getuid") else "unknown"  # Windows has no uid
    return f"terminal{' ' + flag if flag else ''} (uid {uid}, not proof of a human)"


async def _decide(settings: Settings, plan_id: str, decision: str, reason: str | None, *, confirm: bool = False,
                  channel: str | None = None, code: str | None = None) -> plans.Plan | None:
    """Record ``decision``; with ``confirm``, show the plan and ask y/N (and the one-time code when TOTP is set
    up) first. None when the human says no."""
    from chiffon.servers.ansible import plans
    from chiffon.shared.runtime import open_runtime

    async with open_runtime(settings) as rt:
        if confirm:
            plan = await plans.get_plan(rt, plan_id)
            show_plan(plan)
            if plan.status == "pending_approval" and not plan.blocked_reason and \
                    not typer.confirm(f"Approve plan {plan_id}?", default=False):
                return None
        if decision == "approved":
            code = ask_code(settings, code)
        return await plans.decide(rt, plan_id, decision, approver=plans.default_approver(),  # type: ignore[arg-type]
                                  channel=channel or terminal_channel(), reason=reason, code=code)


@app.command("approve")
def approve_cmd(plan_id: str, reason: Annotated[str | None, typer.Option(help="Note for the audit trail.")] = None,
                yes: Annotated[bool, typer.Option("--yes", help="Approve without the terminal prompt (recorded as "
                                                                 "such); for scripts a human runs.")] = False,
                code: Annotated[str | None, typer.Option(
                    help="Current one-time code (when TOTP is set up; asked on the terminal otherwise).")] = None,
                config: ConfigOpt = None) -> None:
    """Show a pending plan and approve it after you confirm (recorded with your account name and uid, as the
    terminal channel, which is not proof of a human; with TOTP set up, the one-time code is), and an audit commit.

    Needs a terminal so that a human sees what they approve; without one it refuses unless --yes.
    """
    setup_logging()
    if not yes and not sys.stdin.isatty():
        err.print("[bold red]error:[/] chiffon approve shows the plan and asks on a terminal, and there is none. "
                  "Run it in your own terminal, or pass --yes to approve without the prompt.", highlight=False,
                  soft_wrap=True)
        raise typer.Exit(EXIT_ERROR)
    plan = run_or_exit(_decide(settings_or_exit(config), plan_id, "approved", reason, confirm=not yes,
                        channel=terminal_channel("--yes") if yes else None, code=code))
    if plan is None:
        out.print(f"not approved; plan {escape(plan_id)} still waits (`chiffon reject {escape(plan_id)}` to drop it)")
        raise typer.Exit(EXIT_AWAITING)
    out.print(escape(f"approved {plan.id} ({plan.playbook}{' --tags ' + ','.join(plan.tags) if plan.tags else ''} "
                     f"on {', '.join(plan.hosts)}); run it with `chiffon execute {plan.id}`"))


@app.command("reject")
def reject_cmd(plan_id: str, reason: Annotated[str | None, typer.Option(help="Note for the audit trail.")] = None,
               config: ConfigOpt = None) -> None:
    """Reject a pending plan; it can never run."""
    setup_logging()
    plan = run_or_exit(_decide(settings_or_exit(config), plan_id, "rejected", reason))
    out.print(escape(f"rejected {plan.id} ({plan.playbook})"))


@app.command("execute")
def execute_cmd(plan_id: str, as_json: JsonOpt = False, ask_vault_pass: AskVaultOpt = False,
                ask_become_pass: AskBecomeOpt = False, config: ConfigOpt = None) -> None:
    """Run an approved plan."""
    setup_logging()
    settings = settings_or_exit(config)
    typed = ask_passwords(ask_vault_pass, ask_become_pass)
    if typed is not None:
        from chiffon.servers.ansible import prompted

        prompted.hold(plan_id, typed)
    from chiffon.orchestrator.compose import open_infra
    from chiffon.servers.ansible import execution, plans
    from chiffon.shared.runtime import open_runtime

    async def go() -> int:
        started = time.perf_counter()
        async with open_runtime(settings) as rt:
            plan = await plans.get_plan(rt, plan_id)
            if plan.status != "approved":
                raise execution.not_runnable(plan)
            async with open_infra(rt) as svc:
                result = await _execute(svc, plan, as_json)
            return _report(plan, result.status, result, started, as_json, None,
                           run_exit_code(result.outcome, result.status))

    raise typer.Exit(run_or_exit(go()))


@app.command("status")
def status_cmd(plan_id: str, as_json: JsonOpt = False, config: ConfigOpt = None) -> None:
    """Show a plan and where it stands (``--json``: the same object as ``chiffon run --json``, with the plan's
    status and its run's outcome)."""
    setup_logging()
    from chiffon.servers.ansible import execution, plans
    from chiffon.shared.runtime import open_runtime

    async def go() -> tuple[plans.Plan, execution.RunResult | None]:
        # a read: Redis only if reconciling a run publishes its outcome
        async with open_runtime(settings_or_exit(config), bus_on_demand=True) as rt:
            await execution.reconcile(rt)  # a run whose process stopped is recorded before it is shown
            return await plans.get_plan(rt, plan_id), await execution.existing_run(rt, plan_id)

    plan, result = run_or_exit(go())
    if as_json:
        out.print_json(json.dumps({**summary(plan, plan.status, result, time.monotonic()), "duration_s": None},
                                  default=str))
        return
    if result is not None:  # whether what was asked for happened comes first
        print_outcome(result, plan.tags)
        out.print(escape(f"run {result.run_id}: `chiffon undo {result.run_id}` plans putting back the files it "
                         "changed"), highlight=False, soft_wrap=True)
    show_plan(plan)
    out.print(f"status: [bold]{plan.status}[/]" + escape(f" (waiting: {plan.paused_reason})" if plan.paused_reason else ""))


@app.command("audit")
def audit_cmd(
    failed: Annotated[bool, typer.Option("--failed", help="Only failed runs.")] = False,
    since: Annotated[str | None, typer.Option(help="7d, 12h, 30m, 2w or an ISO date.")] = None,
    service: Annotated[str | None, typer.Option(help="Only records about this service.")] = None,
    plan: Annotated[str | None, typer.Option("--plan", help="Only records of this plan.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 100,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Query the audit trail: `--failed --since 7d`, `--service uptime-kuma`."""
    setup_logging()
    settings = settings_or_exit(config)
    from chiffon.shared.audit import AuditLog, parse_since

    try:
        entries = AuditLog(settings.audit_dir).query(
            since=parse_since(since) if since else None, failed=failed, service=service, plan_id=plan, limit=limit)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    if as_json:
        out.print_json(json.dumps({"records": [e.as_dict() for e in entries]}, default=str))
        return
    table = Table("time", "kind", "plan", "service", "status", "summary", "commit")
    for e in entries:
        b = e.body
        table.add_row(e.time.strftime("%Y-%m-%d %H:%M:%S"), escape(str(b.get("kind", ""))),
                      escape(str(b.get("plan_id", ""))), escape(str(b.get("service") or "")),
                      escape(str(b.get("status") or b.get("decision") or "")), escape(e.subject), e.commit[:10])
    out.print(table)


@app.command("serve")
def serve_cmd(
    transport: Annotated[str, typer.Option(help="stdio or http.")] = "stdio",
    host: Annotated[str | None, typer.Option(help="HTTP bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8765).")] = None,
    repo: Annotated[Path | None, typer.Option(help="IaC repo.")] = None,
    toolsets: Annotated[str | None, typer.Option(
        help="Servers whose tools the IDE gets besides the orchestrator's: comma-separated from ansible, memory, "
             "llm, voice, tasks; all; none (default: ansible,memory).")] = None,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Serve the orchestrator MCP server (plan_request, execute_plan, plan_status, audit_query) with the tools of
    the servers named in --toolsets."""
    if transport not in ("stdio", "http"):
        err.print(f"[bold red]error:[/] --transport: {transport!r} is not one of: stdio, http")
        raise typer.Exit(EXIT_ERROR)
    from chiffon.orchestrator.toolsets import parse_toolsets

    try:
        chosen = parse_toolsets(toolsets)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    setup_logging(verbose, part="orchestrator")
    from chiffon.orchestrator.compose import BACKGROUND_START_S, open_orchestrator, refresh_metrics
    from chiffon.shared.mcp import serve
    from chiffon.shared.runtime import open_runtime

    settings = settings_or_exit(config)

    @asynccontextmanager
    async def composed_server() -> AsyncIterator[Any]:
        async with open_runtime(settings) as rt, open_orchestrator(rt, repo, chosen) as composed:
            from chiffon.orchestrator.playbook_memory import PlaybookIndex, index_in_background

            indexing = asyncio.create_task(index_in_background(PlaybookIndex(composed.memory.vectors),
                                                               composed.ansible.catalog, BACKGROUND_START_S))
            try:
                yield composed.server
            finally:
                indexing.cancel()

    async def go_stdio() -> None:
        # An IDE starts this per window and waits for tools/list: the answer comes from the declarations the
        # composed server gave last time, while it is being composed (orchestrator.declared).
        from fastmcp import FastMCP

        from chiffon.orchestrator.declared import declarations_key, serve_stdio_declared
        from chiffon.orchestrator.toolsets import INSTRUCTIONS

        key = declarations_key(chosen, str(repo.resolve()) if repo else None, settings.model_dump_json())
        front = FastMCP("chiffon", instructions=INSTRUCTIONS, mask_error_details=True)
        await serve_stdio_declared(front, composed_server, settings.home / "cache" /
                                   f"serve-tools-{'-'.join(chosen) or 'none'}.json", key)

    async def go() -> None:
        async with open_runtime(settings) as rt, open_orchestrator(rt, repo, chosen) as composed:
            from chiffon.orchestrator.playbook_memory import PlaybookIndex, index_in_background
            from chiffon.shared import tokens
            from chiffon.shared.health import check_parts

            indexing = asyncio.create_task(index_in_background(PlaybookIndex(composed.memory.vectors),
                                                               composed.ansible.catalog, BACKGROUND_START_S))
            await serve(composed.server, settings, "http" if transport == "http" else "stdio", host, port,
                        refresh=lambda: refresh_metrics(rt),
                        **tokens.lookups(rt.store),
                        health_check=lambda: check_parts(rt, service="chiffon", hostd=True))
            indexing.cancel()

    try:
        run_or_exit(go_stdio() if transport == "stdio" else go())
    except KeyboardInterrupt:
        pass
