"""The one run path of a plan: a task of kind ``infra`` on the task queue, run by a queue worker.

Every run goes through :func:`dispatch_run`: ``execute_plan``, ``chiffon run``/``execute``, the ansible
server's ``run`` tool (given :func:`dispatch_run` as its ``run_plan``) and agents with ``infra.run`` (they call
those tools). The queue is the one queue engine (:mod:`chiffon.shared.queue`): the task row is committed
before its stream entry, its result before the entry is acked, a dead worker's task is taken over after
``tasks.reclaim_idle_s``, and a redelivered run answers with the stored run (:func:`run_approved`). One worker
class runs everything queued; :func:`running_infra_worker` gives it the ``infra`` handler, with at most
``ansible.parallel_runs`` runs at once, and :func:`queue_run` submits with the ``infra`` input check
(:func:`check_infra_inputs`).

A plan whose hosts are busy is paused and its task ends, so it holds no worker slot; every infra worker
resumes ready plans each ``hostd.heartbeat_s`` (:func:`resume_ready`) and queues them again. A client waiting
in :func:`dispatch_run` follows the plan, not one task: progress arrives keyed by plan, across the pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from chiffon.servers.ansible import execution
from chiffon.servers.ansible.attempt import publish_progress, resume_ready, run_approved
from chiffon.servers.ansible.events import TaskEvent
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.bus import RUN_PROGRESS
from chiffon.shared.error_bus import report_heartbeats
from chiffon.shared.errors import ChiffonError, InvalidInput, PlanStateError
from chiffon.shared.hosts import HeartbeatWatch
from chiffon.shared.queue import INFRA, RESULTS_STREAM, Handler, Outcome, TaskContext, TaskQueue, TaskRecord, TaskWorker
from chiffon.shared.runtime import Runtime, running

log = logging.getLogger(__name__)


def check_infra_inputs(role: str, inputs: dict[str, Any] | None) -> None:
    """The queue's input check of kind ``infra``: role ``infra`` and a string ``inputs.plan_id``.

    Raises:
        InvalidInput: another role, or no plan id.
    """
    if role != INFRA or not isinstance((inputs or {}).get("plan_id"), str):
        raise InvalidInput("inputs", "an infra task has role infra and inputs.plan_id")


def infra_handler(svc: AnsibleService) -> Handler:
    """The queue handler of kind ``infra``: run ``inputs.plan_id`` (:func:`run_approved`), progress on
    ``run_progress``. The outcome's result is ``{"run": RunResult}``, ``{"paused": reason}``, or
    ``{"paused": null}`` when another worker's task runs it; a plan that cannot run (unapproved, rejected,
    unknown) fails the task with the reason."""

    async def handle(ctx: TaskContext) -> Outcome:
        plan_id = str(ctx.task.inputs["plan_id"])

        async def progress(event: TaskEvent) -> None:
            await publish_progress(ctx.rt, plan_id, event)

        try:
            ran = await run_approved(svc, plan_id, progress)
        except ChiffonError as exc:
            return Outcome(status="failed", error=str(exc), result={"error_type": type(exc).__name__})
        if ran.result is None:
            return Outcome(status="succeeded", result={"paused": ran.paused})
        return Outcome(status="succeeded", result={"run": ran.result.model_dump(mode="json")})

    return handle


async def queue_run(rt: Runtime, plan_id: str) -> TaskRecord:
    """Queue one run of ``plan_id`` (a task of kind ``infra``)."""
    queue = TaskQueue(rt, checks={INFRA: check_infra_inputs})
    return await queue.submit(INFRA, f"run plan {plan_id}", {"plan_id": plan_id}, kind=INFRA)


class Resumer:
    """Each ``hostd.heartbeat_s``: report hosts whose hostd heartbeats stopped or came back
    (:class:`~chiffon.shared.hosts.HeartbeatWatch`), record the runs a stopped process left ``running``
    (:func:`~chiffon.servers.ansible.execution.reconcile`), then resume the paused plans whose hosts are free
    and queue them again."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.heartbeats = HeartbeatWatch()

    async def run_forever(self) -> None:
        beating = sorted(h for h, c in self.rt.settings.hosts.items() if "hostd" in c.chiffon)
        while True:
            try:
                changes = await self.heartbeats.check(self.rt.bus, beating)
                report_heartbeats(changes.stopped, changes.resumed)
                await execution.reconcile(self.rt)
                for plan_id in await resume_ready(self.rt):
                    await queue_run(self.rt, plan_id)
            except Exception as exc:  # the store or the bus restarting: try again next beat
                log.warning("could not reconcile or resume plans: %s", exc)
            await asyncio.sleep(self.rt.settings.hostd.heartbeat_s)

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def running_infra_worker(svc: AnsibleService, enabled: bool = True) -> AsyncIterator[TaskWorker | None]:
    """Run a queue worker for ``infra`` tasks, and the resumer, for the block (embedded mode, ``chiffon serve``,
    ``chiffon run``); bounded shutdown."""
    if not enabled:
        yield None
        return
    rt = svc.rt
    worker = TaskWorker(rt, {INFRA: infra_handler(svc)}, [INFRA], concurrency=rt.settings.ansible.parallel_runs,
                        name=f"{socket.gethostname()}-{os.getpid()}-infra")
    async with running(worker, "chiffon-infra-worker"), running(Resumer(rt), "chiffon-plan-resumer"):
        yield worker


async def dispatch_run(rt: Runtime, plan_id: str, *, on_event: Callable[[TaskEvent], Awaitable[None]] | None = None,
                       timeout_s: float | None = None) -> execution.RunResult:
    """Queue a run of ``plan_id`` and wait for the plan's run, relaying its progress (also across a pause).

    Raises:
        PlanStateError: the plan cannot run (unapproved, rejected, already running...), with the reason.
        TimeoutError: no run within ``timeout_s`` (default: the run timeout plus a minute; a pause counts).
    """
    timeout_s = timeout_s or rt.settings.ansible.run_timeout_s + 60
    cursors = await run_cursors(rt)
    await queue_run(rt, plan_id)
    async with asyncio.timeout(timeout_s):
        return await follow_run(rt, plan_id, cursors, on_event=on_event)


async def run_cursors(rt: Runtime) -> dict[str, str]:
    """Where :func:`follow_run` starts reading: the newest entries of ``run_progress`` and the queue's results
    stream (:data:`~chiffon.shared.queue.RESULTS_STREAM`) now
    (take them before the run is queued or looked up, so nothing that follows is missed)."""
    # progress first: in one XREAD reply a run's last progress precedes its result
    return {RUN_PROGRESS: await rt.bus.last_id(RUN_PROGRESS), RESULTS_STREAM: await rt.bus.last_id(RESULTS_STREAM)}


async def follow_run(rt: Runtime, plan_id: str, cursors: dict[str, str], *,
                     on_event: Callable[[TaskEvent], Awaitable[None]] | None = None) -> execution.RunResult:
    """Relay the progress of ``plan_id`` after ``cursors`` (:func:`run_cursors`, advanced in place) and return
    its run once a queue worker reports it (also across a pause); waits for ever without a caller's timeout.
    ``dispatch_run`` and the REST API's event stream (:mod:`chiffon.orchestrator.api`) follow runs this way.

    Raises:
        PlanStateError: the plan cannot run (unapproved, rejected, already running...), with the reason.
    """
    bus = rt.bus
    queue = TaskQueue(rt)
    while True:
        for msg in await bus.read(cursors, block_ms=1000):
            cursors[msg.stream] = msg.id
            if msg.stream == RUN_PROGRESS:
                if msg.data.get("plan_id") == plan_id and on_event is not None:
                    await on_event(TaskEvent(**msg.data["event"]))
                continue
            if msg.data.get("role") != INFRA:
                continue
            task = await queue.get(msg.data["task_id"])
            if task.inputs.get("plan_id") != plan_id:
                continue
            ran = _ran(task)
            if ran is not None:
                return ran


def _ran(task: TaskRecord) -> execution.RunResult | None:
    """The run a finished infra task reports; None when it paused the plan (another task will run it).

    Raises:
        PlanStateError: the task failed: the plan cannot run (its reason).
    """
    result: dict[str, Any] = task.result or {}
    if task.status != "succeeded":
        raise PlanStateError(task.error or f"the run task {task.id} ended {task.status}")
    if "run" in result:
        return execution.RunResult(**result["run"])
    return None
