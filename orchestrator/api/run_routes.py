"""``/api/v1/runs``: a plan's run and its outcome, its progress as Server-Sent Events; and ``/api/v1/health``.

A run is named by its id (``run-…``) or by its plan's (``plan-…``; a plan runs once), so a client that only knows
the plan it approved can follow it. The event stream (``text/event-stream``):

* ``event: progress`` for each task result on a host, ``data`` ``{seq, status, host, task, module, changed,
  message}``, ``id`` the seq: first those already stored (a subscriber that comes late misses nothing), then
  live ones from the bus (``run_progress``, published by the queue worker running it);
* ``: keep-alive`` comments every :data:`HEARTBEAT_S` seconds, so proxies and clients keep the connection;
* ``event: end`` once, then the stream closes: ``data`` ``{plan_id, run_id, status, outcome, outcome_reasons,
  checks, message}``, when the run ended, the plan cannot run (rejected, expired, blocked, the run task failed),
  or the stream reached :func:`stream_limit_s` (``status`` the plan's then; reconnect to keep following).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse

from chiffon.orchestrator.api.bodies import ERRORS, RUN_OR_PLAN_ID, ErrorBody
from chiffon.orchestrator.api.context import Api, Caller
from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.events import TaskEvent
from chiffon.shared.errors import ChiffonError, PlanNotFound
from chiffon.shared.runtime import Runtime

HEARTBEAT_S = 15.0
"""Seconds between keep-alive comments on an idle event stream; the plan's status is looked at as often."""
ENDED = ("rejected", "expired")
"""Plan statuses that never lead to a run."""
EVENT_KEYS = ("seq", "status", "host", "task", "module", "changed", "message")
RunId = Annotated[str, PathParam(pattern=RUN_OR_PLAN_ID, description="A run id (run-…) or its plan's (plan-…).")]


def stream_limit_s(rt: Runtime) -> float:
    """The longest an event stream stays open: the run timeout plus a minute (``ansible.run_timeout_s`` + 60 s),
    as long as ``chiffon run`` waits for a run."""
    return float(rt.settings.ansible.run_timeout_s + 60)


async def plan_of(rt: Runtime, run_or_plan: str) -> str:
    """The plan id of ``run_or_plan`` (a run id, or a plan id, returned as is once the plan is known).

    Raises:
        PlanNotFound: no such run or plan.
    """
    if run_or_plan.startswith("run-"):
        plan_id = await rt.store.pool.fetchval("SELECT plan_id FROM runs WHERE id=$1", run_or_plan)
        if plan_id is None:
            raise PlanNotFound(f"no run {run_or_plan!r}; GET /api/v1/plans lists plans, whose ids follow runs too")
        return str(plan_id)
    await plans.get_plan(rt, run_or_plan)
    return run_or_plan


def sse(event: str | None, data: dict[str, Any] | None = None, event_id: int | None = None) -> str:
    """One Server-Sent Events message: ``event``/``id``/``data`` lines (``data`` as one JSON line); a comment
    (``: keep-alive``) when ``event`` is None."""
    if event is None:
        return ": keep-alive\n\n"
    head = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
    return head + f"data: {json.dumps(data, default=str)}\n\n"


def _progress(event: dict[str, Any]) -> str:
    data = {k: event.get(k) for k in EVENT_KEYS}
    return sse("progress", data, int(event["seq"]))


def end_data(plan: plans.Plan, result: execution.RunResult | None, message: str) -> dict[str, Any]:
    """The ``end`` event's data: the run's outcome when there is one, else the plan's status and why."""
    if result is None:
        return {"plan_id": plan.id, "run_id": None, "status": plan.status, "outcome": None, "outcome_reasons": [],
                "checks": [], "message": message}
    return {"plan_id": plan.id, "run_id": result.run_id, "status": result.status, "outcome": result.outcome,
            "outcome_reasons": result.outcome_reasons, "checks": result.checks, "changed": result.changed,
            "failure": result.failure, "message": message}


async def follow(rt: Runtime, plan_id: str, *, heartbeat_s: float = HEARTBEAT_S) -> AsyncIterator[str]:
    """The event stream of ``plan_id``'s run (see the module docstring), as SSE text chunks; a keep-alive comment
    and a look at the plan's status each ``heartbeat_s`` seconds without news."""
    from chiffon.orchestrator.runs import follow_run, run_cursors

    cursors = await run_cursors(rt)  # before anything is looked up: what happens next is on the bus after these
    sent = 0
    _, run = await plans.decision_and_run(rt, plan_id)
    if run is not None:
        for stored in await execution.run_events(rt, run["id"], limit=5000):
            sent = max(sent, int(stored["seq"]))
            yield _progress(stored)
    done = await execution.existing_run(rt, plan_id)
    plan = await plans.get_plan(rt, plan_id)
    if done is not None:
        yield sse("end", end_data(plan, done, f"the run ended: {done.outcome or done.status}"))
        return
    if plan.status in ENDED or (plan.status == "pending_approval" and plan.blocked_reason):
        yield sse("end", end_data(plan, None, f"plan {plan_id} is {plan.status}: "
                                              f"{plan.blocked_reason or 'it will not run'}"))
        return
    live: asyncio.Queue[TaskEvent] = asyncio.Queue()
    follower = asyncio.ensure_future(follow_run(rt, plan_id, cursors, on_event=live.put))
    deadline = asyncio.get_running_loop().time() + stream_limit_s(rt)
    try:
        while True:
            getter = asyncio.ensure_future(live.get())
            finished, _ = await asyncio.wait({getter, follower}, timeout=heartbeat_s,
                                             return_when=asyncio.FIRST_COMPLETED)
            if getter in finished:
                event = getter.result()
                if event.seq > sent:
                    sent = event.seq
                    yield _progress(event.as_dict())
                continue
            getter.cancel()
            if follower in finished:
                while not live.empty():
                    event = live.get_nowait()
                    if event.seq > sent:
                        sent = event.seq
                        yield _progress(event.as_dict())
                yield sse("end", await _ending(rt, plan_id, follower))
                return
            yield sse(None)
            plan = await plans.get_plan(rt, plan_id)
            if plan.status in ENDED:
                yield sse("end", end_data(plan, None, f"plan {plan_id} is {plan.status}; it will not run"))
                return
            if asyncio.get_running_loop().time() > deadline:
                yield sse("end", end_data(plan, None, f"still {plan.status} after {stream_limit_s(rt):.0f} s; "
                                                      "reconnect to keep following"))
                return
    finally:
        follower.cancel()


async def _ending(rt: Runtime, plan_id: str, follower: asyncio.Future[execution.RunResult]) -> dict[str, Any]:
    plan = await plans.get_plan(rt, plan_id)
    try:
        result = follower.result()
    except ChiffonError as exc:  # the run task failed: the plan cannot run (snapshot changed, expired...)
        return end_data(plan, None, str(exc))
    return end_data(plan, result, f"the run ended: {result.outcome or result.status}")


def run_routes(api: Api, caller: Callable[..., Awaitable[Caller]]) -> APIRouter:
    """The run routes and ``/health`` over ``api``; runs behind ``caller`` (the token check)."""
    rt = api.svc.rt
    routes = APIRouter()

    @routes.get("/runs/{run_id}", tags=["runs"], responses={**ERRORS, 404: {"model": ErrorBody}})
    async def get_run(run_id: RunId, who: Caller = Depends(caller)) -> dict[str, Any]:
        """A plan's run: `outcome` (achieved, partial, failed, cancelled), `status` (Ansible's succeeded or failed;
        the plan's status while there is no finished run), `outcome_reasons`, `checks`, and the approval."""
        plan_id = await plan_of(rt, run_id)
        plan = await plans.get_plan(rt, plan_id)
        decision, run = await plans.decision_and_run(rt, plan_id)
        run = run or {}
        finished = run.get("status") in ("succeeded", "failed")
        return {"plan_id": plan_id, "run_id": run.get("id"), "plan_status": plan.status,
                "status": run["status"] if finished else plan.status, "outcome": run.get("outcome"),
                "outcome_reasons": run.get("outcome_reasons") or [], "checks": run.get("checks") or [],
                "skipped": run.get("skipped") or [], "changed": run.get("changed"), "rc": run.get("rc"),
                "failure": run.get("failure"), "audit_commit": run.get("audit_commit"),
                "started_at": run.get("started_at"), "finished_at": run.get("finished_at"), "approval": decision,
                "events": f"/api/v1/runs/{plan_id}/events"}

    @routes.get("/runs/{run_id}/events", tags=["runs"], response_class=StreamingResponse,
                responses={**ERRORS, 404: {"model": ErrorBody},
                           200: {"content": {"text/event-stream": {}},
                                 "description": "progress events, keep-alive comments, then one end event."}})
    async def run_events(run_id: RunId, who: Caller = Depends(caller)) -> StreamingResponse:
        """The run's progress as Server-Sent Events until it ends (see docs/automations.md)."""
        plan_id = await plan_of(rt, run_id)
        return StreamingResponse(follow(rt, plan_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @routes.get("/health", tags=["health"])
    async def health() -> JSONResponse:
        """Whether the parts answer (PostgreSQL, Redis, hostd), as `/health`: no token needed, nothing else said;
        503 when a part failed."""
        from chiffon.shared.health import check_parts

        report = await check_parts(rt, service="chiffon", hostd=True)
        return JSONResponse(report, status_code=503 if report["status"] == "failed" else 200)

    return routes
