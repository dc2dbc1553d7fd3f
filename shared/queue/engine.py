"""The durable task queue: rows in PostgreSQL, delivery through Redis Streams.

One engine runs every kind of task: agents and the pipeline (:mod:`chiffon.servers.tasks`), plan runs (kind
``infra``, :mod:`chiffon.orchestrator.runs`) and its own probe (``noop``). It knows no kind's meaning: a caller
registers input checks by kind (:class:`TaskQueue`) and handlers by kind (:class:`~.worker.TaskWorker`).

A submitted task is a row in ``queue_tasks`` (status ``queued``), committed
first, then an entry ``{task: id, data: the task}`` on the stream
``agent_tasks:<role>:<priority>``; workers read the streams of the roles they
serve through the consumer group ``agents``, high priority first. (The Redis names
keep their first spelling: a renamed stream or group would orphan the entries in
flight of a running installation.) Delivery is at-least-once; completion is exactly-once:

* a read acks unrun the entry of a task whose once-marker exists (finished or
  cancelled) and counts every other delivery in the hash ``chiffon:task-attempts``;
* a first delivery runs from the task in its entry; its ``running`` row is
  written behind (at its finish, or once it has run a moment); a redelivery
  (a crashed worker's task) is claimed first with a guarded UPDATE that skips a
  task already finished, and runs again as attempt n+1;
* it finishes with one guarded UPDATE (``queued`` or ``running`` only), so a task
  cancelled meanwhile, or finished by another worker, is never finished twice;
* then, in one Lua call, the result goes on ``agent_results`` if the task's
  once-marker is new, and the entry is acked: an entry is acked only after its
  result is stored;
* while a task runs, its worker re-claims the entry every third of
  ``tasks.reclaim_idle_s`` (XCLAIM to itself resets the idle time); entries of a
  dead worker go idle and a live worker takes them over with XAUTOCLAIM.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from chiffon.shared.bus import AGENT_RESULTS, AGENT_TASKS, STREAM_MAXLEN, Message
from chiffon.shared.errors import InvalidInput, NotFound, TaskStateError
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

GROUP = "agents"  # the consumer group of every task stream (name kept: see the module docstring)
TASK_STREAM_PREFIX = AGENT_TASKS  # a task stream is <prefix>:<role>:<priority> (name kept)
RESULTS_STREAM = AGENT_RESULTS  # one entry per finished task: {task_id, status, role, error} (name kept)
PRIORITIES = ("high", "normal", "low")
Priority = Literal["high", "normal", "low"]
Kind = Literal["agent", "pipeline", "noop", "infra"]  # the kinds queue_tasks accepts (its kind CHECK)
Status = Literal["queued", "running", "succeeded", "failed", "escalated", "cancelled"]
TERMINAL = frozenset({"succeeded", "failed", "escalated", "cancelled"})
NOOP = "noop"  # the queue's own probe: no LLM, sleeps inputs.sleep_s (at most MAX_NOOP_S)
INFRA: Literal["infra"] = "infra"  # kind and role of a plan's run; its check and handler: chiffon.orchestrator.runs
MAX_NOOP_S = 60.0
DONE_PREFIX = "chiffon:task-done:"  # + task id: the once-only marker of a finished or cancelled task
ATTEMPTS_KEY = "chiffon:task-attempts"  # hash: task id -> deliveries that started it, until it finishes
TASK_COLUMNS = ("id, kind, role, goal, inputs, priority, session_id, idempotency_key, status, result, error, attempts, "
            "completions, worker, tokens_used, created_at, started_at, finished_at")

InputCheck = Callable[[str, dict[str, Any] | None], None]  # (role, inputs): raises InvalidInput to refuse a task

# Queue a batch of stored tasks in one call. KEYS: the task stream of each task. ARGV: maxlen, then per task its id
# and its entry payload. Each entry is {task: id, data: payload}.
_SUBMIT_SCRIPT = """
for i, key in ipairs(KEYS) do
  redis.call('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 'task', ARGV[2 * i], 'data', ARGV[2 * i + 1])
end
return #KEYS
"""

# Finish a batch of tasks in one call. KEYS: the results stream, the attempts hash, then per task its once-marker
# and its task stream. ARGV: ttl s, maxlen, group, then per task its id, its result json and its entry id ('' = no
# entry to ack). The result is published only when the once-marker is new: once per task, ever.
_FINISH_SCRIPT = """
for i = 1, (#KEYS - 2) / 2 do
  local task, result, entry = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  if redis.call('SET', KEYS[2 * i + 1], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'data', result)
  end
  if entry ~= '' then
    redis.call('XACK', KEYS[2 * i + 2], ARGV[3], entry)
  end
  redis.call('HDEL', KEYS[2], task)
end
return 1
"""


def stream_for(role: str, priority: str) -> str:
    """The stream a task of ``role`` at ``priority`` goes on: ``agent_tasks:<role>:<priority>``."""
    return f"{TASK_STREAM_PREFIX}:{role}:{priority}"


def new_task_id() -> str:
    """``task-`` plus 12 random hex digits."""
    return f"task-{secrets.token_hex(6)}"


class TaskSpec(NamedTuple):
    """A validated task, not yet stored (:meth:`TaskQueue.spec`); ``inputs`` is JSON text."""

    id: str
    kind: str
    role: str
    goal: str
    inputs: str
    priority: str
    session_id: str
    idempotency_key: str | None


class TaskRecord(BaseModel):
    """One task as stored."""

    id: str
    kind: Kind
    role: str
    goal: str
    inputs: dict[str, Any]
    priority: Priority
    session_id: str = Field(description="Memory and history of the task's agents are scoped to this session.")
    idempotency_key: str | None
    status: Status
    result: dict[str, Any] | None
    error: str | None
    attempts: int = Field(description="Deliveries that started running it (more than 1 after a reclaim).")
    completions: int = Field(description="Times it was finished: 0 or 1.")
    worker: str | None
    tokens_used: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def done(self) -> bool:
        """Finished one way or another (succeeded, failed, escalated, cancelled)."""
        return self.status in TERMINAL


class Step(BaseModel):
    """One stored step of a task (``queue_steps``)."""

    seq: int
    attempt: int
    role: str
    kind: str = Field(description="llm, tool_call, tool_result, denied, error, final, review, escalation, note.")
    content: dict[str, Any]
    tokens: int | None
    at: datetime


def task_from_row(row: Any) -> TaskRecord:
    """The record of a ``queue_tasks`` row read with :data:`TASK_COLUMNS`."""
    return TaskRecord(**dict(row))


def _queued(spec: TaskSpec, created_at: datetime) -> TaskRecord:
    """The record of a task just inserted from ``spec``."""
    return TaskRecord(
        id=spec.id, kind=spec.kind, role=spec.role, goal=spec.goal, inputs=json.loads(spec.inputs),
        priority=spec.priority, session_id=spec.session_id, idempotency_key=spec.idempotency_key, status="queued",
        result=None, error=None, attempts=0, completions=0, worker=None, tokens_used=0, created_at=created_at,
        started_at=None, finished_at=None)


def entry_payload(task: TaskRecord) -> str:
    """The ``data`` field of a task's stream entry: what a worker needs to run it without reading its row.

    JSON ``{task_id, kind, role, goal, inputs, priority, session_id, idempotency_key, created_at}``.
    """
    return json.dumps({"task_id": task.id, "kind": task.kind, "role": task.role, "goal": task.goal,
                       "inputs": task.inputs, "priority": task.priority, "session_id": task.session_id,
                       "idempotency_key": task.idempotency_key, "created_at": task.created_at.isoformat()})


def running_from_entry(data: dict[str, Any], attempts: int, worker: str, started_at: datetime) -> TaskRecord | None:
    """The record of a task a worker starts from its entry's payload (:func:`entry_payload`); None for an entry
    that carries only ``task_id`` (written before payloads were), whose row must be read instead."""
    if "goal" not in data:
        return None
    return TaskRecord(
        id=data["task_id"], kind=data["kind"], role=data["role"], goal=data["goal"], inputs=data["inputs"],
        priority=data["priority"], session_id=data["session_id"], idempotency_key=data["idempotency_key"],
        status="running", result=None, error=None, attempts=attempts, completions=0, worker=worker, tokens_used=0,
        created_at=data["created_at"], started_at=started_at, finished_at=None)


class TaskQueue:
    """Submit, inspect and cancel tasks. Cheap to build; holds no connection of its own.

    ``checks`` maps a kind to its input check, called with the task's role and inputs after the checks every task
    gets; it raises :class:`~chiffon.shared.errors.InvalidInput` to refuse the task (the agents' server checks
    roles and test commands, :mod:`chiffon.orchestrator.runs` a plan run's inputs). A kind without a check is
    stored as submitted.
    """

    def __init__(self, rt: Runtime, *, checks: Mapping[str, InputCheck] | None = None) -> None:
        self.rt = rt
        self.checks = dict(checks or {})

    def spec(self, role: str, goal: str, inputs: dict[str, Any] | None = None, priority: str = "normal", *,
             kind: Kind = "agent", idempotency_key: str | None = None, session_id: str | None = None) -> TaskSpec:
        """Validate one task before anything is stored.

        Raises:
            InvalidInput: empty or too long goal, unknown priority, inputs that are not a JSON object, an
                idempotency key over 200 characters, or what the check of ``kind`` refuses.
        """
        limit = self.rt.settings.tasks.max_goal_chars
        if not isinstance(goal, str) or not goal.strip():
            raise InvalidInput("goal", "is empty; say what the agent should achieve")
        if len(goal) > limit:
            raise InvalidInput("goal", f"{len(goal)} characters; at most {limit} (tasks.max_goal_chars)")
        if priority not in PRIORITIES:
            raise InvalidInput("priority", f"{priority!r} is not one of {', '.join(PRIORITIES)}")
        if inputs is not None and not isinstance(inputs, dict):
            raise InvalidInput("inputs", "must be a JSON object")
        if idempotency_key is not None and not 0 < len(idempotency_key) <= 200:
            raise InvalidInput("idempotency_key", "must be 1 to 200 characters")
        check = self.checks.get(kind)
        if check is not None:
            check(role, inputs)
        try:
            encoded = json.dumps(inputs or {})
        except (TypeError, ValueError) as exc:
            raise InvalidInput("inputs", f"is not JSON-serialisable: {exc}") from exc
        task_id = new_task_id()
        return TaskSpec(task_id, kind, role, goal, encoded, priority, session_id or task_id, idempotency_key)

    async def submit(self, role: str, goal: str, inputs: dict[str, Any] | None = None, priority: str = "normal", *,
                     kind: Kind = "agent", idempotency_key: str | None = None,
                     session_id: str | None = None) -> TaskRecord:
        """Store a task and put it on its stream.

        A second submit with the same ``idempotency_key`` returns the first task instead of adding one.

        Raises:
            InvalidInput: see :meth:`spec`; nothing is stored.
        """
        spec = self.spec(role, goal, inputs, priority, kind=kind, idempotency_key=idempotency_key,
                         session_id=session_id)
        return (await self.submit_many([spec]))[0]

    async def submit_many(self, specs: list[TaskSpec]) -> list[TaskRecord]:
        """Store validated tasks (:meth:`spec`) in one statement, then put them on their streams in one script call.

        Returns the tasks in order; a task whose idempotency key was used before is that earlier task (it is not
        queued again). The rows are committed before any entry exists, so a worker never sees a task without its row.
        """
        columns: list[Any] = list(zip(*specs, strict=True)) if specs else [[]] * 8
        rows = await self.rt.store.pool.fetch(
            "INSERT INTO queue_tasks (id, kind, role, goal, inputs, priority, session_id, idempotency_key, status) "
            "SELECT id, kind, role, goal, inputs::jsonb, priority, session_id, key, 'queued' "
            "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], "
            "$8::text[]) AS t(id, kind, role, goal, inputs, priority, session_id, key) "  # no key: nothing to conflict
            + ("ON CONFLICT (idempotency_key) DO NOTHING " if any(spec.idempotency_key for spec in specs) else "")
            + "RETURNING id, created_at", *[list(c) for c in columns])
        created = {r["id"]: r["created_at"] for r in rows}
        stored = {spec.id: _queued(spec, created[spec.id]) for spec in specs if spec.id in created}
        if stored:
            keys: list[str] = []
            args: list[Any] = [STREAM_MAXLEN]
            for task in stored.values():
                keys.append(stream_for(task.role, task.priority))
                args += [task.id, entry_payload(task)]
            await self.rt.bus.script(_SUBMIT_SCRIPT)(keys=keys, args=args)
        out = []
        for spec in specs:
            if spec.id not in stored:  # the key was used: that task is the answer
                stored[spec.id] = task_from_row(await self.rt.store.pool.fetchrow(
                    f"SELECT {TASK_COLUMNS} FROM queue_tasks WHERE idempotency_key = $1", spec.idempotency_key))
            out.append(stored[spec.id])
        return out

    async def get(self, task_id: str) -> TaskRecord:
        """The task. Raises NotFound."""
        row = await self.rt.store.pool.fetchrow(f"SELECT {TASK_COLUMNS} FROM queue_tasks WHERE id = $1", task_id)
        if row is None:
            raise NotFound(f"no task {task_id!r}; list_tasks shows the recent ones")
        return task_from_row(row)

    async def steps(self, task_id: str, *, after: int = 0, limit: int = 500) -> list[Step]:
        """Stored steps of the task, oldest first, ``seq`` greater than ``after``. Raises NotFound."""
        await self.get(task_id)
        rows = await self.rt.store.pool.fetch(
            "SELECT seq, attempt, role, kind, content, tokens, at FROM queue_steps "
            "WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT $3", task_id, after, limit)
        return [Step(**dict(r)) for r in rows]

    async def list(self, *, status: str | None = None, role: str | None = None, session_id: str | None = None,
                   limit: int = 50) -> list[TaskRecord]:
        """Tasks, newest first, filtered by status, role and session.

        Raises:
            InvalidInput: unknown status or a limit outside 1..1000.
        """
        if status is not None and status not in (*TERMINAL, "queued", "running"):
            raise InvalidInput("status", f"{status!r} is not one of queued, running, {', '.join(sorted(TERMINAL))}")
        if not 1 <= limit <= 1000:
            raise InvalidInput("limit", f"must be within 1..1000, got {limit}")
        rows = await self.rt.store.pool.fetch(
            f"SELECT {TASK_COLUMNS} FROM queue_tasks WHERE ($1::text IS NULL OR status = $1) "
            f"AND ($2::text IS NULL OR role = $2) AND ($3::text IS NULL OR session_id = $3) "
            f"ORDER BY created_at DESC, id LIMIT $4", status, role, session_id, limit)
        return [task_from_row(r) for r in rows]

    async def cancel(self, task_id: str, reason: str = "cancelled by the user") -> TaskRecord:
        """Cancel a queued or running task; a running one stops before its next step.

        Raises:
            NotFound: no such task.
            TaskStateError: the task already finished (its status is named).
        """
        row = await self.rt.store.pool.fetchrow(
            f"UPDATE queue_tasks SET status = 'cancelled', error = $2, finished_at = now() "
            f"WHERE id = $1 AND status IN ('queued', 'running') RETURNING {TASK_COLUMNS}", task_id, reason)
        if row is None:
            task = await self.get(task_id)
            raise TaskStateError(f"task {task_id} already {task.status}; only queued or running tasks can be cancelled")
        task = task_from_row(row)
        await publish_result(self.rt, task, entry=None)
        return task

    async def wait(self, task_id: str, timeout_s: float, *, poll_s: float = 0.25) -> TaskRecord:
        """The task once it is finished, or as it stands after ``timeout_s``. Raises NotFound."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            task = await self.get(task_id)
            if task.done or asyncio.get_running_loop().time() >= deadline:
                return task
            await asyncio.sleep(poll_s)


class Finished(NamedTuple):
    """What :func:`publish_results` needs of a finished task (a :class:`TaskRecord` has these fields too)."""

    id: str
    status: str
    role: str
    priority: str
    error: str | None


async def publish_results(rt: Runtime, finished: list[tuple[Finished | TaskRecord, Message | None]]) -> None:
    """Put each finished task on ``agent_results`` (once per task, ever), ack its stream entry (None: no entry to
    ack; the worker that reads it acks it unrun) and forget its delivery count, all in one atomic script call."""
    if not finished:
        return
    keys, args = [RESULTS_STREAM, ATTEMPTS_KEY], [rt.settings.tasks.result_ttl_s, STREAM_MAXLEN, GROUP]
    for task, entry in finished:
        keys += [DONE_PREFIX + task.id, entry.stream if entry else stream_for(task.role, task.priority)]
        args += [task.id, json.dumps({"task_id": task.id, "status": task.status, "role": task.role,
                                      "error": task.error}), entry.id if entry else ""]
    await rt.bus.script(_FINISH_SCRIPT)(keys=keys, args=args)


async def publish_result(rt: Runtime, task: TaskRecord, entry: Message | None) -> None:
    """:func:`publish_results` for one task."""
    await publish_results(rt, [(task, entry)])


class TaskCancelled(Exception):
    """Raised inside a handler when its task was cancelled; the worker stops it quietly."""


@dataclass
class TaskContext:
    """What a handler gets: the task, and ways to record steps and notice a cancel."""

    task: TaskRecord
    rt: Runtime
    _seq: int = 0
    tokens: int = 0

    async def step(self, role: str, kind: str, content: dict[str, Any], tokens: int | None = None) -> None:
        """Store one step in ``queue_steps`` (numbered across attempts)."""
        if self._seq == 0:
            self._seq = await self.rt.store.pool.fetchval(
                "SELECT coalesce(max(seq), 0) FROM queue_steps WHERE task_id = $1", self.task.id)
        self._seq += 1
        self.tokens += tokens or 0
        await self.rt.store.pool.execute(
            "INSERT INTO queue_steps (task_id, attempt, seq, role, kind, content, tokens) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)", self.task.id, self.task.attempts, self._seq, role, kind,
            json.loads(json.dumps(content, default=str)), tokens)

    async def check_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` when the task was cancelled (one indexed read)."""
        status = await self.rt.store.pool.fetchval("SELECT status FROM queue_tasks WHERE id = $1", self.task.id)
        if status == "cancelled":
            raise TaskCancelled(self.task.id)


class Outcome(BaseModel):
    """What a handler returns: the final status and the result or error."""

    status: Literal["succeeded", "failed", "escalated"]
    result: dict[str, Any] | None = None
    error: str | None = None


Handler = Callable[[TaskContext], Awaitable[Outcome]]


async def run_noop(ctx: TaskContext) -> Outcome:
    """The queue's probe task: sleep ``inputs.sleep_s`` seconds (0 to 60), then succeed."""
    delay = float(ctx.task.inputs.get("sleep_s", 0) or 0)
    await asyncio.sleep(min(max(delay, 0.0), MAX_NOOP_S))
    return Outcome(status="succeeded", result={"slept_s": delay})
