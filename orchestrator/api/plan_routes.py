"""``/api/v1/plans``: make a plan from a request, list and read plans, approve or reject one.

A plan's body is the one JSON object of ``chiffon run --json`` (:func:`chiffon.orchestrator.cli.render.summary`,
the same keys) plus ``plan_status`` (the stored status), ``request``, ``risk``, ``risk_reasons``, ``diff`` and
``created_at``. Its ``status`` reads as the CLI's: ``awaiting_approval``, ``blocked``, ``rejected``, the run's
``succeeded``/``failed`` once it ran, else the plan's status.

Approval follows the MCP policy: a token holder is the same principal as an HTTP MCP client (it may be the IDE's
model), so ``approve`` works only where the operator enabled tool approval (``approvals.allow_tool_approval``)
and answers 403 otherwise, saying how a human approves (the console, or ``chiffon approve ID`` in their own
terminal). It records ``token:NAME from ADDRESS`` (the token's word, channel ``api``), needs the one-time code
where TOTP is set up (:func:`chiffon.servers.ansible.plans.decide`), then queues the run on the one run path
(:func:`chiffon.orchestrator.runs.queue_run`). ``reject`` is always allowed: it only stops a plan, as a client
declining the approval form does.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam

from chiffon.orchestrator.api.bodies import (
    ERRORS,
    PLAN_ID,
    ApproveBody,
    ErrorBody,
    PlanBody,
    PlanStatusName,
    RejectBody,
)
from chiffon.orchestrator.api.context import Api, Caller, Refused
from chiffon.orchestrator.cli.render import summary
from chiffon.servers.ansible import execution, plans
from chiffon.shared.errors import InvalidInput

CHANNEL = "api"
"""The channel a decision through the REST API records."""
PlanId = Annotated[str, PathParam(pattern=PLAN_ID, description="Plan id, e.g. plan-3f9a2c1d7b.")]


def plan_status(plan: plans.Plan, result: execution.RunResult | None) -> str:
    """The ``status`` of a plan's body, as ``chiffon run --json`` says it (see the module docstring)."""
    if result is not None:
        return result.status
    if plan.status == "pending_approval":
        return "blocked" if plan.blocked_reason else "awaiting_approval"
    return plan.status


def plan_body(plan: plans.Plan, result: execution.RunResult | None, started: float) -> dict[str, Any]:
    """The JSON of a plan: :func:`~chiffon.orchestrator.cli.render.summary` plus the fields a reviewer needs.
    ``started``: ``time.perf_counter()`` when the request came in (``duration_s`` is this request's)."""
    return {**summary(plan, plan_status(plan, result), result, started), "plan_status": plan.status,
            "request": plan.request, "risk": plan.risk, "risk_reasons": plan.risk_reasons, "diff": plan.diff,
            "created_at": plan.created_at.isoformat()}


def checked_repo(svc_repo: Path | None, given: str | None) -> Path | None:
    """The repo a REST plan may use: the server's own (``chiffon serve --repo``, CHIFFON_REPO), given or not.

    The plan_request tool plans against that repo only; the API gives a token holder no more, so any other path
    (``/etc``, ``../..``, a symlink elsewhere) is refused before anything reads it.

    Raises:
        InvalidInput: ``given`` is not the server's repo (compared after resolving symlinks and ``..``).
    """
    if given is None:
        return svc_repo
    if svc_repo is None:
        raise InvalidInput("repo", "this server has no repo configured (chiffon serve --repo, CHIFFON_REPO); the "
                                   "API cannot plan against another path")
    if os.path.realpath(os.path.expanduser(given)) != os.path.realpath(svc_repo):
        raise InvalidInput("repo", f"this server plans against {svc_repo} only; omit repo or give that path")
    return svc_repo


def approval_refusal(plan_id: str, console_url: str | None) -> Refused:
    """The 403 for an approval while ``approvals.allow_tool_approval`` is off, saying how a human approves."""
    where = f"on the console ({console_url})" if console_url else "on the console (`chiffon console`)"
    return Refused(403, "ApprovalRefused",
                   f"approving over the API is off (approvals.allow_tool_approval): a token proves a client, not a "
                   f"human. A human approves plan {plan_id} {where} or with `chiffon approve {plan_id}` in their own "
                   f"terminal; then follow it at /api/v1/runs/{plan_id}/events. Nothing was approved.")


def plan_routes(api: Api, caller: Callable[..., Awaitable[Caller]]) -> APIRouter:
    """The plan routes over ``api``, each behind ``caller`` (the token check)."""
    rt = api.svc.rt
    routes = APIRouter(tags=["plans"], responses=ERRORS)

    @routes.post("/plans", status_code=201, responses={
        422: {"model": ErrorBody, "description": "Bad input, or no playbook matches (error NoMatch, `candidates`)."}})
    async def create_plan(body: PlanBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        """Plan a request as the plan_request tool does: match it to a unit of the repo, run check mode with
        --diff, store the plan awaiting approval. 201 with the plan (the keys of `chiffon run --json`). A request
        that several units answer equally is planned with the best, and `planner.answer.candidates` names the
        others; a blocked plan (`status` blocked, `blocked_reason`) cannot be approved."""
        started = time.perf_counter()
        from chiffon.orchestrator.planner import plan_request

        repo = checked_repo(api.svc.repo, body.repo)
        plan = await plan_request(api.svc, body.plan_request(repo), router=api.router, playbooks=api.playbooks)
        if api.record is not None:
            await api.record(f"Request {plan.request!r} planned as {plan.id} over the REST API "
                             f"({who.client_id}): {plan.playbook} on {', '.join(plan.hosts) or 'no hosts'}, "
                             f"risk {plan.risk}.", "plan", plan.id)
        return plan_body(plan, None, started)

    @routes.get("/plans")
    async def list_plans(
        who: Caller = Depends(caller),
        status: Annotated[list[PlanStatusName] | None, Query(description="Only plans in these statuses.")] = None,
        limit: Annotated[int, Query(ge=1, le=500, description="At most this many, newest first.")] = 50,
    ) -> dict[str, Any]:
        """Plans, newest first: `?status=pending_approval` is what waits for a human."""
        started = time.perf_counter()
        found = await plans.listing(rt, status, limit=limit)
        return {"plans": [plan_body(p, None, started) for p in found]}

    @routes.get("/plans/{plan_id}", responses={404: {"model": ErrorBody}})
    async def get_plan(plan_id: PlanId, who: Caller = Depends(caller)) -> dict[str, Any]:
        """One plan, with its run's outcome once it ran."""
        started = time.perf_counter()
        plan = await plans.get_plan(rt, plan_id)
        return plan_body(plan, await execution.existing_run(rt, plan_id), started)

    @routes.post("/plans/{plan_id}/approve", status_code=202, responses={
        403: {"model": ErrorBody, "description": "Approving over the API is off; the message says how a human does."},
        404: {"model": ErrorBody}, 409: {"model": ErrorBody, "description": "Not pending, or blocked."}})
    async def approve(plan_id: PlanId, body: ApproveBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        """Approve a pending plan and queue its run (202). Only where the operator enabled tool approval
        (approvals.allow_tool_approval), with the current one-time code where TOTP is set up; recorded as the
        token's word (`token:NAME from ADDRESS`, channel `api`). Follow it at /api/v1/runs/{plan_id}/events."""
        started = time.perf_counter()
        if not rt.settings.approvals.allow_tool_approval:
            raise approval_refusal(plan_id, getattr(rt.settings.console, "url", None))
        if not body.reason.strip():
            raise InvalidInput("reason", "say why this plan is approved; it goes into the audit trail")
        plan = await plans.decide(rt, plan_id, "approved", approver=who.approver, channel=CHANNEL,
                                  reason=body.reason, code=body.code)
        task = await asyncio.shield(_queue(api, plan_id))  # approved means queued, even if the client hangs up
        return {**plan_body(plan, None, started), "run_task": task,
                "events": f"/api/v1/runs/{plan_id}/events", "run": f"/api/v1/runs/{plan_id}"}

    @routes.post("/plans/{plan_id}/reject", responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}})
    async def reject(plan_id: PlanId, who: Caller = Depends(caller),
                     body: RejectBody | None = None) -> dict[str, Any]:
        """Reject a pending plan; it can never run. Recorded as the token's word (channel `api`)."""
        started = time.perf_counter()
        plan = await plans.decide(rt, plan_id, "rejected", approver=who.approver, channel=CHANNEL,
                                  reason=body.reason if body is not None else None)
        return plan_body(plan, None, started)

    return routes


async def _queue(api: Api, plan_id: str) -> str:
    """Queue the run of an approved plan on the one run path; the task id."""
    from chiffon.orchestrator.runs import queue_run

    return (await queue_run(api.svc.rt, plan_id)).id
