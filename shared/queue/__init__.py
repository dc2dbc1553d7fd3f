"""The one queue engine: durable tasks of any kind, rows in PostgreSQL, delivery through Redis Streams.

    queue = TaskQueue(rt, checks={"agent": check_agent})       # input checks by kind, given by the caller
    task = await queue.submit("developer", "fix the build")   # row committed, then the stream entry
    worker = TaskWorker(rt, {"agent": run_agent}, ["developer"])  # handlers by kind
    await worker.run_forever()

:mod:`~chiffon.shared.queue.engine` submits, lists and cancels tasks and defines what a handler gets and
returns; :mod:`~chiffon.shared.queue.worker` reads, runs and finishes them; :mod:`~chiffon.shared.queue.recorder`
writes their rows behind in group commits. The engine knows no kind's meaning: the agents' server
(:mod:`chiffon.servers.tasks`) and the plan runs (:mod:`chiffon.orchestrator.runs`) register their own.

The worker's names load on first use (it imports the error bus), so a client that only submits or reads tasks
does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chiffon.shared.queue.engine import (
    GROUP,
    INFRA,
    NOOP,
    PRIORITIES,
    RESULTS_STREAM,
    TERMINAL,
    Handler,
    InputCheck,
    Kind,
    Outcome,
    Priority,
    Status,
    Step,
    TaskCancelled,
    TaskContext,
    TaskQueue,
    TaskRecord,
    TaskSpec,
    stream_for,
)

if TYPE_CHECKING:
    from chiffon.shared.queue.worker import TaskWorker, workers_serving

__all__ = [
    "GROUP",
    "INFRA",
    "NOOP",
    "PRIORITIES",
    "RESULTS_STREAM",
    "TERMINAL",
    "Handler",
    "InputCheck",
    "Kind",
    "Outcome",
    "Priority",
    "Status",
    "Step",
    "TaskCancelled",
    "TaskContext",
    "TaskQueue",
    "TaskRecord",
    "TaskSpec",
    "TaskWorker",
    "stream_for",
    "workers_serving",
]


def __getattr__(name: str) -> Any:
    if name in ("TaskWorker", "workers_serving"):
        from chiffon.shared.queue import worker

        return getattr(worker, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
