"""MCP server ``chiffon``: plan a request, get a human's approval, run it, audit it.

Mounts ``chiffon-ansible`` under the namespace ``ansible`` (its tools appear as
``ansible_list_playbooks``...) and ``chiffon-llm`` under ``llm`` (``llm_chat``,
``llm_route``...), and adds the orchestration tools.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Literal

from fastmcp import Context, FastMCP
from mcp_types import InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field

from chiffon.orchestrator import approval
from chiffon.orchestrator.planner import plan_request as make_plan
from chiffon.orchestrator.runs import dispatch_run
from chiffon.orchestrator.toolsets import DEFAULT_TOOLSETS as DEFAULT_TOOLSETS  # re-exported: light, in toolsets
from chiffon.orchestrator.toolsets import INSTRUCTIONS, TOOLSETS
from chiffon.orchestrator.toolsets import parse_toolsets as parse_toolsets
from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.request import PlanRequest
from chiffon.servers.ansible.server import CHECK, DESTRUCTIVE, READ_ONLY, create_ansible_server
from chiffon.servers.ansible.service import AnsibleService, progress_reporter
from chiffon.shared.audit import parse_since
from chiffon.shared.errors import ChiffonError, InvalidInput
from chiffon.shared.mcp import ChiffonErrors

if TYPE_CHECKING:
    from chiffon.servers.llm.router import Router
    from chiffon.servers.memory.service import MemoryService
    from chiffon.servers.tasks.service import TasksService
    from chiffon.servers.voice.service import VoiceService

log = logging.getLogger(__name__)


class ExecuteResult(BaseModel):
    """Outcome of execute_plan."""

    plan_id: str
    outcome: str | None = Field(None, description="Whether what was asked for happened: achieved, partial (applied, "
                                                  "but not in place), failed or cancelled; None when nothing ran.")
    status: Literal["succeeded", "failed", "awaiting_approval", "rejected"]
    message: str = Field(description="What happened (the outcome and its first reason first), and what to do next "
                                     "when nothing ran.")
    run: execution.RunResult | None = None


class PlanStatus(BaseModel):
    """A plan with its decision and run, if any."""

    plan: plans.Plan
    approval: dict[str, Any] | None = Field(description="decision, approver, channel, reason, decided_at.")
    run: dict[str, Any] | None = Field(description="run id, status, rc, changed, failure, started/finished.")


def _caller() -> str:
    """`` (token NAME from ADDRESS)`` for an HTTP call, so the audit says which client token approved; else ``""``."""
    from fastmcp.server.dependencies import get_access_token, get_http_request

    try:
        request = get_http_request()
    except RuntimeError:  # stdio: the local user's own IDE
        return ""
    token = get_access_token()
    who = token.client_id if token is not None else "no token"
    return f" ({who} from {request.client.host if request.client else 'unknown address'})"


def _awaiting(plan_id: str, why: str) -> ExecuteResult:
    return ExecuteResult(
        plan_id=plan_id, status="awaiting_approval",
        message=f"{why} Nothing ran. Do not approve it yourself and do not run commands to approve it: tell the "
                f"human that plan {plan_id} waits for their decision (they review and approve it in their own "
                "terminal or on the console), then call execute_plan again once they say it is approved.",
    )


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

    @mcp.tool(annotations=CHECK)
    async def plan_request(
        ctx: Context,
        request: str = Field(description="What should happen, e.g. 'Deploy Uptime Kuma and add the existing portals'."),
        limit: str | None = Field(None, description="--limit host/group pattern."),
        extra_vars: dict[str, Any] | None = Field(None, description="Extra vars; passed literally, never templated."),
        inventory: str | None = Field(None, description="Inventory name (prod, local) or path in the repo; "
                                                        "default: the one ansible.cfg names."),
        skip_tags: list[str] | None = Field(None, description="--skip-tags: tags of the playbook not to run."),
        secret_vars: list[str] | None = Field(None, description="Extra var names whose values are secrets (names "
                                                                "like *_password are already): never stored or "
                                                                "shown, handed to the run only."),
        apply_role: str | None = Field(None, description="Plan a generated playbook applying this role, one that "
                                                         "no playbook applies (needs apply_to)."),
        apply_to: str | None = Field(None, description="Inventory host or group for apply_role."),
    ) -> plans.Plan:
        """Match the request to a unit of the repo (a playbook, or a role/task file a tag selects in a site
        playbook; by words, and by meaning when memory is on), preview it in check mode with --diff and
        --tags, store the plan.

        Changes nothing on the hosts except tasks written with ``check_mode: false`` (listed in the plan's
        warnings, with the commands that will run after approval). Returns the plan (playbook, tags, inventory, hosts, vars, diff, risk,
        warnings, blocked_reason, match reason) with status pending_approval; hand its id to execute_plan.
        A plan with a blocked_reason (no host matched, every task skipped) cannot be approved.
        """
        asked = PlanRequest(request=request, limit=limit, extra_vars=extra_vars, inventory=inventory,
                            skip_tags=skip_tags, secret_vars=secret_vars, apply_role=apply_role, apply_to=apply_to)
        plan = await make_plan(svc, asked, on_event=progress_reporter(ctx, None, "check"), router=router,
                               playbooks=playbooks)
        await record(f"Request {plan.request!r} planned as {plan.id}: {plan.playbook}"
                     f"{' --tags ' + ','.join(plan.tags) if plan.tags else ''} on "
                     f"{', '.join(plan.hosts) or 'no hosts'}, risk {plan.risk}.", "plan", plan.id)
        return plan

    @mcp.tool(annotations=DESTRUCTIVE)
    async def execute_plan(
        ctx: Context, plan_id: str = Field(description="Plan id from plan_request.")
    ) -> ExecuteResult | InputRequiredResult:
        """Run a plan after it is approved, streaming task progress.

        A pending plan is put to the client's approval form when it supports elicitation (recorded as the
        client's word, ``client-asserted "NAME"``; with TOTP set up the form needs the current one-time code),
        otherwise it waits for the human's terminal or console. Refuses rejected and already-run plans.
        """
        plan = await plans.get_plan(rt, plan_id)
        if plan.status == "pending_approval":
            if not approval.client_can_elicit(ctx):
                return _awaiting(plan_id, "This client cannot show an approval form.")
            if approval.is_modern(ctx):
                answer = approval.guard_answer(ctx, plan)
                if isinstance(answer, InputRequiredResult):
                    return answer
            else:
                answer = await approval.elicit_answer(ctx, plan)
            if answer.decision == "pending":
                return _awaiting(plan_id, "The approval dialog was dismissed.")
            plan = await plans.decide(rt, plan_id, answer.decision,
                                      approver=f"{approval.client_asserted(ctx)}{_caller()}",
                                      channel=answer.channel, reason=answer.reason, code=answer.code)
            if plan.status == "rejected":
                return ExecuteResult(plan_id=plan_id, status="rejected",
                                     message="Rejected in the approval form; nothing ran.")
        if plan.status != "approved":
            raise execution.not_runnable(plan)
        total = len((plan.check_result or {}).get("events", [])) or None
        result = await dispatch_run(rt, plan_id, on_event=progress_reporter(ctx, total, "run"))
        first = f"{result.outcome or result.status}: " + "; ".join(result.outcome_reasons[:1] or ["-"])
        await record(f"Plan {plan_id} ({result.playbook}) {first}. Ansible: {result.status} on "
                     f"{', '.join(result.hosts)}, {result.changed} change(s).", "run", plan_id)
        return ExecuteResult(plan_id=plan_id, outcome=result.outcome, status=result.status, run=result,
                             message=f"{first}. {result.playbook} on {', '.join(result.hosts)}: Ansible "
                                     f"{result.status}, {result.changed} change(s); audit commit "
                                     f"{result.audit_commit}.")

    @mcp.tool(annotations=READ_ONLY)
    async def plan_status(plan_id: str = Field(description="Plan id.")) -> PlanStatus:
        """A plan with its approval decision and its run (status, changes, failure), if any."""
        plan = await plans.get_plan(rt, plan_id)
        decision, run = await plans.decision_and_run(rt, plan_id)
        return PlanStatus(plan=plan, approval=decision, run=run)

    @mcp.tool(annotations=READ_ONLY)
    async def audit_query(
        since: str | None = Field(None, description="7d, 12h, 30m, 2w or an ISO date."),
        failed: bool = Field(False, description="Only failed runs."),
        service: str | None = Field(None, description="Only records about this service, e.g. uptime-kuma."),
        plan_id: str | None = Field(None, description="Only records of this plan."),
        kind: Literal["plan", "approval", "rejection", "run", "pause", "resume", "denial", "escalation"] | None = Field(
            None),
        limit: int = Field(50, ge=1, le=1000),
    ) -> list[dict[str, Any]]:
        """Audit records (git commits), newest first: 'all failures in the last week', 'all changes to X'."""
        entries = await asyncio.to_thread(
            rt.audit.query, since=parse_since(since) if since else None, failed=failed, service=service,
            plan_id=plan_id, kind=kind, limit=limit)
        return [e.as_dict() for e in entries]

    @mcp.tool(annotations=READ_ONLY)
    async def errors(
        since: str | None = Field(None, description="7d, 12h, 30m, 2w or an ISO date."),
        severity: Literal["info", "warning", "error", "critical"] | None = Field(
            None, description="At least this severity."),
        incident_id: str | None = Field(None, pattern=r"^inc-[0-9a-f]{10}$",
                                        description="One incident, with its recent events."),
        limit: int = Field(50, ge=1, le=500),
    ) -> dict[str, Any]:
        """Incidents: errors from every part (LLM backends, runs, workers, hostd, backups, doctor) grouped by the
        plan, task, host or backend they share, newest first; or one incident with its recent events."""
        from chiffon.orchestrator import incidents as inc

        await inc.Correlator(rt).catch_up()
        if incident_id:
            return {"incident": await inc.incident(rt, incident_id)}
        return {"incidents": await inc.incidents(rt, since=parse_since(since) if since else None, severity=severity,
                                                 limit=limit)}

    if rt.settings.approvals.allow_tool_approval:
        @mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))
        async def approve_plan(
            ctx: Context,
            plan_id: str = Field(description="Plan id."), reason: str = Field("", description="Audit note."),
            code: str = Field("", description="Current one-time code, when the operator set up TOTP."),
        ) -> plans.Plan:
            """Approve a plan (enabled by the operator: approvals.allow_tool_approval; with TOTP set up it also
            needs the human's current one-time code)."""
            if not reason.strip():
                raise InvalidInput("reason", "say why this plan is approved; it goes into the audit trail")
            return await plans.decide(rt, plan_id, "approved",
                                      approver=f"{approval.client_asserted(ctx)} (operator-enabled tool){_caller()}",
                                      channel="mcp-tool", reason=reason, code=code)

    from chiffon.orchestrator.api import mount_api

    mount_api(mcp, svc, router=router, playbooks=playbooks, record=record)  # /api/v1 beside /mcp over HTTP
    return mcp
