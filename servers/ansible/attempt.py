"""One attempt at an approved plan, as an infra worker makes it: what the queue's infra handler does, free of any queue.

The composition root (:mod:`chiffon.orchestrator.runs`) puts each run on the task queue as a task of kind
``infra`` and runs this module's :func:`run_approved` in a queue worker; every run goes that way
(``execute_plan``, ``chiffon run``/``execute``, this server's ``run`` tool, agents with ``infra.run``).
Only :func:`run_approved` calls :func:`chiffon.servers.ansible.execution.execute`.

* Delivery is at-least-once, so a plan that already ran answers with its stored run instead of running again.
* Before a run the plan's target hosts that the config knows (``hosts:``) are asked (:mod:`chiffon.shared.hosts`).
  While one is busy or offline the plan is ``paused`` with the reason, an audit record and a progress event,
  and the task ends at once: a paused plan holds no worker slot. :func:`resume_ready`, which every infra
  worker calls each ``hostd.heartbeat_s``, resumes it once the hosts are free, and the worker queues it again.
* Progress events go on ``run_progress`` keyed by plan, so whoever waits follows the plan across a pause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.events import TaskEvent
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.bus import RUN_PROGRESS
from chiffon.shared.hosts import USABLE, host_states
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

OnEvent = Callable[[TaskEvent], Awaitable[None]]


@dataclass
class Ran:
    """What one attempt did: a run (stored, possibly an earlier one), a pause with its reason, or neither: the
    plan was resumed by another worker, whose queued task runs it."""

    result: execution.RunResult | None = None
    paused: str | None = None


async def publish_progress(rt: Runtime, plan_id: str, event: TaskEvent) -> None:
    """One progress event of ``plan_id`` on ``run_progress``."""
    await rt.bus.publish(RUN_PROGRESS, {"plan_id": plan_id, "event": event.as_dict()})


async def blocked_hosts(rt: Runtime, plan: plans.Plan) -> dict[str, dict[str, str]]:
    """The configured target hosts of ``plan`` that are not available now: ``{host: {status, reason}}``."""
    targets = [h for h in plan.hosts if h in rt.settings.hosts]
    if not targets:
        return {}
    states = await host_states(rt.bus, targets, rt.settings.hostd.assume_available)
    return {h: s for h, s in states.items() if s["status"] not in USABLE}


async def run_approved(svc: AnsibleService, plan_id: str, on_event: OnEvent | None = None) -> Ran:
    """Run ``plan_id`` once: its stored run when it already ran (or, redelivered after the worker running it
    died, here or on another host, that run reconciled as interrupted), a pause when a target host is busy or offline,
    else a run now.

    Raises:
        PlanNotFound, PlanStateError: no such plan, or it is not approved (the status is named).
    """
    rt = svc.rt
    done = await execution.existing_run(rt, plan_id)
    if done is not None:  # redelivered after the run finished: answer, do not run twice
        return Ran(result=done)
    plan = await plans.get_plan(rt, plan_id)
    if plan.status == "running":  # redelivered because the worker running it died? record that run, answer it
        done = await execution.settled_run(rt, plan_id)  # a worker on another host: once its heartbeat stopped
        if done is not None:
            return Ran(result=done)
    if plan.status in ("approved", "paused"):
        blocked = await blocked_hosts(rt, plan)
        if blocked:
            reason = "; ".join(f"{h} is {s['status']}: {s['reason']}" for h, s in blocked.items())
            if reason != plan.paused_reason and await plans.pause(rt, plan_id, reason):
                log.info("plan %s paused: %s", plan_id, reason)
                await _note(rt, plan, "pause", reason, on_event, ",".join(blocked))
            return Ran(paused=reason)
        if plan.status == "paused":
            if not await plans.resume(rt, plan_id):
                return Ran()  # a resumer won the guarded resume and queued the run: running it here too would race
            await _note(rt, plan, "resume", "its hosts are available again", on_event, ",".join(plan.hosts))
    catalog = await svc.catalog(Path(plan.repo))
    return Ran(result=await execution.execute(rt, catalog, plan_id, on_event=on_event))


async def resume_ready(rt: Runtime) -> list[str]:
    """Resume every paused plan whose hosts are all available again; their ids (to queue again).

    :func:`plans.resume` is guarded (``paused`` only), so of several workers doing this at once exactly one
    resumes, and queues, each plan.
    """
    resumed = []
    for plan_id in await plans.paused_ids(rt):
        plan = await plans.get_plan(rt, plan_id)
        if not await blocked_hosts(rt, plan) and await plans.resume(rt, plan_id):
            log.info("plan %s resumed: its hosts are available", plan_id)
            await _note(rt, plan, "resume", f"{', '.join(plan.hosts)} available again", None, ",".join(plan.hosts))
            resumed.append(plan_id)
    return resumed


async def _note(rt: Runtime, plan: plans.Plan, kind: str, why: str, on_event: OnEvent | None, hosts: str) -> None:
    """A pause or resume as an audit record and a progress event (TaskEvent-shaped, so every client shows it)."""
    await asyncio.to_thread(rt.audit.record, kind, f"{plan.id} {kind}d: {why}",
                            {"plan_id": plan.id, "playbook": plan.playbook, "reason": why})
    event = TaskEvent(seq=0, event=f"chiffon_{kind}", status="paused" if kind == "pause" else "resumed",
                      host=hosts, task=f"{kind}d: {why}"[:200], module="", changed=False, message=why)
    if on_event is not None:
        await on_event(event)
    else:
        await publish_progress(rt, plan.id, event)
