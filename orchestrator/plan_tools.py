"""The orchestrator's plan tools: ``plan_request``, ``execute_plan``, ``plan_status`` and, when an operator enables
it, ``approve_plan``: a request becomes a stored plan (the planner), a human decides (the approval flows of
:mod:`chiffon.orchestrator.approval`), and the approved plan runs through the one run path
(:func:`chiffon.orchestrator.runs.dispatch_run`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from fastmcp import Context, FastMCP
from mcp_types import InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field

from chiffon.orchestrator import approval
from chiffon.orchestrator.planner import plan_request as make_plan
from chiffon.orchestrator.runs import dispatch_run
from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.request import PlanRequest
from chiffon.servers.ansible.server import CHECK, DESTRUCTIVE, READ_ONLY
from chiffon.servers.ansible.service import AnsibleService, progress_reporter
from chiffon.shared.errors import InvalidInput

if TYPE_CHECKING:
    from chiffon.orchestrator.playbook_memory import PlaybookIndex
    from chiffon.servers.llm.router import Router

log = logging.getLogger(__name__)

Record = Callable[[str, str, str], Awaitable[None]]
"""Keeps a request, plan or result in memory: ``(text, kind, plan_id)``, best effort."""


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


def add_plan_tools(mcp: FastMCP, svc: AnsibleService, *, router: Router | None, playbooks: PlaybookIndex | None,
                   record: Record) -> None:
    """Register the plan tools on ``mcp``: plans made by the planner over ``svc`` (with ``router`` and
    ``playbooks`` when given), runs through the one run path, each request and result kept by ``record``."""
    rt = svc.rt

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
