"""The one run path of a plan: dispatch through the ``agent_tasks`` stream to an infra worker.

Every run goes through :func:`dispatch_run`: ``execute_plan`` and ``chiffon run``/``execute``
(orchestrator), this server's ``run`` tool, and agents with ``infra.run`` (they call those tools).
Only :class:`InfraWorker` calls :func:`servers.ansible.plans.execute`.

The orchestrator publishes ``{task_id, kind: "ansible.run", plan_id}`` on
``agent_tasks`` and waits for the matching ``agent_results`` message, relaying
``run_progress`` messages meanwhile. An :class:`InfraWorker` reads
``agent_tasks`` through the consumer group ``infra``, runs the plan and acks
only after the result is stored and published. Delivery is at-least-once, so
handling is idempotent: a plan that already ran answers with its stored result
instead of running again; tasks a crashed worker left pending longer than
``reclaim_idle_ms`` are taken over with XAUTOCLAIM.

Before a run the worker asks the host heartbeats (:mod:`shared.hosts`) about the
plan's target hosts that the config knows (``hosts:``). While one is busy or
offline the plan is ``paused`` (its reason visible in ``plan_status`` and
``chiffon status``, a progress event sent to whoever waits); it resumes by itself
when they are all available again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from chiffon.servers.ansible import plans
from chiffon.servers.ansible.runner import TaskEvent
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.bus import AGENT_RESULTS, AGENT_TASKS, RUN_PROGRESS, Message
from chiffon.shared.errors import ChiffonError, PlanStateError
from chiffon.shared.hosts import host_states
from chiffon.shared.runtime import Runtime, running

log = logging.getLogger(__name__)

GROUP = "infra"
KIND_RUN = "ansible.run"


class InfraWorker:
    """Consumes ``agent_tasks`` in group ``infra`` and runs approved plans."""

    def __init__(self, svc: AnsibleService, *, name: str | None = None, concurrency: int = 2,
                 reclaim_idle_ms: int = 60 * 60 * 1000) -> None:
        self.svc = svc
        self.rt: Runtime = svc.rt
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self._slots = asyncio.Semaphore(concurrency)
        self._reclaim_idle_ms = reclaim_idle_ms
        self._running: set[asyncio.Task[None]] = set()

    async def run_forever(self) -> None:
        """Reclaim stale tasks, then read and handle new ones until cancelled."""
        bus = self.rt.bus
        await bus.ensure_group(AGENT_TASKS, GROUP)
        for msg in await bus.claim_stale(AGENT_TASKS, GROUP, self.name, min_idle_ms=self._reclaim_idle_ms):
            await self._spawn(msg)
        while True:
            await self._slots.acquire()
            self._slots.release()
            for msg in await bus.read_group(AGENT_TASKS, GROUP, self.name, count=1, block_ms=1000):
                await self._spawn(msg)

    async def _spawn(self, msg: Message) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._handle(msg))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handle(self, msg: Message) -> None:
        try:
            result = await self.handle(msg.data)
            await self.rt.bus.publish(AGENT_RESULTS, result)
            await self.rt.bus.ack(AGENT_TASKS, GROUP, msg.id)
        except Exception:
            log.exception("task %s failed in the worker; it stays pending for reclaim", msg.data.get("task_id"))
        finally:
            self._slots.release()

    async def handle(self, task: dict[str, Any]) -> dict[str, Any]:
        """Run one task; returns the ``agent_results`` payload (``ok`` false with ``error`` on refusal)."""
        task_id, plan_id = task.get("task_id"), task.get("plan_id")
        if task.get("kind") != KIND_RUN or not plan_id:
            return {"task_id": task_id, "ok": False, "error": f"unknown task kind {task.get('kind')!r}"}
        done = await plans.existing_run(self.rt, plan_id)
        if done is not None:  # redelivered after the run finished: answer, do not run twice
            return {"task_id": task_id, "ok": True, "result": done.model_dump(mode="json")}

        async def progress(event: TaskEvent) -> None:
            await self.rt.bus.publish(RUN_PROGRESS, {"task_id": task_id, "event": event.as_dict()})

        try:
            plan = await plans.get_plan(self.rt, plan_id)
            if plan.status in ("approved", "paused"):
                await wait_for_hosts(self.rt, plan, progress)
            catalog = await self.svc.catalog(Path(plan.repo))
            result = await plans.execute(self.rt, catalog, plan_id, on_event=progress)
        except ChiffonError as exc:
            return {"task_id": task_id, "ok": False, "error": str(exc), "error_type": type(exc).__name__}
        return {"task_id": task_id, "ok": True, "result": result.model_dump(mode="json")}

    async def close(self) -> None:
        """Wait for the tasks in hand to finish."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


async def wait_for_hosts(rt: Runtime, plan: plans.Plan, on_event: Callable[[TaskEvent], Awaitable[None]]) -> None:
    """Return once every configured target host of ``plan`` is available, pausing the plan meanwhile.

    The targets are the hosts check mode touched that ``hosts:`` names; the state is re-read every
    ``hostd.heartbeat_s``. Each pause, change of reason and resume is a progress event and an audit record.
    """
    targets = [h for h in plan.hosts if h in rt.settings.hosts]
    reason = ""
    while targets:
        states = await host_states(rt.bus, targets, rt.settings.hostd.assume_available)
        blocked = {h: s for h, s in states.items() if s["status"] != "available"}
        if not blocked:
            break
        now = "; ".join(f"{h} is {s['status']}: {s['reason']}" for h, s in blocked.items())
        if now != reason:
            if await plans.pause(rt, plan.id, now):
                log.info("plan %s paused: %s", plan.id, now)
                await _note(rt, plan, "pause", now, on_event, ",".join(blocked))
            reason = now
        await asyncio.sleep(rt.settings.hostd.heartbeat_s)
    if reason and await plans.resume(rt, plan.id):
        log.info("plan %s resumed: %s available", plan.id, ", ".join(targets))
        await _note(rt, plan, "resume", f"{', '.join(targets)} available again", on_event, ",".join(targets))


async def _note(rt: Runtime, plan: plans.Plan, kind: str, why: str,
                on_event: Callable[[TaskEvent], Awaitable[None]], hosts: str) -> None:
    """A pause or resume as an audit record and a progress event (TaskEvent-shaped, so every client shows it)."""
    await asyncio.to_thread(rt.audit.record, kind, f"{plan.id} {kind}d: {why}",
                            {"plan_id": plan.id, "playbook": plan.playbook, "reason": why})
    await on_event(TaskEvent(seq=0, event=f"chiffon_{kind}", status="paused" if kind == "pause" else "resumed",
                             host=hosts, task=f"{kind}d: {why}"[:200], module="", changed=False, message=why))


@contextlib.asynccontextmanager
async def running_worker(svc: AnsibleService, enabled: bool = True):  # type: ignore[no-untyped-def]
    """Run an in-process :class:`InfraWorker` for the duration of the block (embedded mode)."""
    if not enabled:
        yield None
        return
    async with running(InfraWorker(svc), "chiffon-infra-worker") as worker:
        yield worker


async def dispatch_run(
    rt: Runtime, plan_id: str, *, on_event: Callable[[TaskEvent], Awaitable[None]] | None = None,
    timeout_s: float | None = None,
) -> plans.RunResult:
    """Publish a run task for ``plan_id`` and wait for its result, relaying progress.

    Raises:
        PlanStateError: the worker refused (plan unapproved, rejected, already run...).
        TimeoutError: no result within ``timeout_s`` (default: the run timeout plus a minute).
    """
    timeout_s = timeout_s or rt.settings.ansible.run_timeout_s + 60
    bus = rt.bus
    # progress first: in one XREAD reply a task's last progress precedes its result
    cursors = {RUN_PROGRESS: await bus.last_id(RUN_PROGRESS), AGENT_RESULTS: await bus.last_id(AGENT_RESULTS)}
    task_id = plans.new_id("task")
    await bus.publish(AGENT_TASKS, {"task_id": task_id, "kind": KIND_RUN, "plan_id": plan_id})
    async with asyncio.timeout(timeout_s):
        while True:
            for msg in await bus.read(cursors, block_ms=1000):
                cursors[msg.stream] = msg.id
                if msg.data.get("task_id") != task_id:
                    continue
                if msg.stream == RUN_PROGRESS:
                    if on_event is not None:
                        await on_event(TaskEvent(**msg.data["event"]))
                    continue
                if not msg.data.get("ok"):
                    raise PlanStateError(msg.data.get("error", "the worker refused the task"))
                return plans.RunResult(**msg.data["result"])
