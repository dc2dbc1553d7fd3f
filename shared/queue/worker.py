"""Workers of the task queue: read, start, run, finish, publish and ack (see :mod:`chiffon.shared.queue.engine`).

A :class:`TaskWorker` serves the streams of its roles in the consumer group
``agents`` and runs each task through the handler registered for its kind. Per batch of entries the hot path is three round trips:

1. one Lua call reads up to one entry per free slot, highest priority first,
   acks unrun the entries of tasks already finished or cancelled (their
   once-marker exists) and counts a delivery for each of the others;
2. a first delivery starts at once from the task carried in its entry; a
   redelivery (a crashed worker's task, or an entry without a payload) is
   claimed first with a guarded UPDATE, which skips a task already finished;
3. :class:`~chiffon.shared.queue.recorder.Recorder` group-commits to PostgreSQL:
   one guarded UPDATE per flush holds the finished tasks and the "running"
   rows of tasks still running after ``CLAIM_WRITE_DELAY_S`` (a short task's
   start and finish are one row write), then one publish-and-ack call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from chiffon.shared.bus import Bus, Message
from chiffon.shared.error_bus import report_error
from chiffon.shared.errors import ChiffonError
from chiffon.shared.logs import log_context
from chiffon.shared.queue.engine import (
    ATTEMPTS_KEY,
    DONE_PREFIX,
    GROUP,
    NOOP,
    PRIORITIES,
    TASK_COLUMNS,
    Handler,
    Outcome,
    TaskCancelled,
    TaskContext,
    TaskRecord,
    publish_result,
    run_noop,
    running_from_entry,
    stream_for,
    task_from_row,
)
from chiffon.shared.queue.recorder import Recorder
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

WORKER_KEY = "chiffon:worker:{name}"  # a live worker's roles, re-set every keepalive (it expires when the worker stops)
BACKLOG_FACTOR = 4  # finished tasks waiting for their row write, per slot, before the worker stops reading
MAX_BUS_PAUSE_S = 10.0  # the longest wait between reads while Redis is away (it doubles from 1 s)
_ADMIT_ARGS = (GROUP, ATTEMPTS_KEY, DONE_PREFIX)  # ARGV[1..3] of the read and admit scripts
_RETURNING = ", ".join(f"t.{column.strip()}" for column in TASK_COLUMNS.split(","))

# admit(stream, id, fields): ack unrun an entry whose task is finished or cancelled (or that has no task), else
# count one more delivery of its task and return that count and the entry's data. ARGV[1] group, ARGV[2] attempts hash, ARGV[3]
# once-marker prefix. Entries written before payloads carry only data = {"task_id": ...}.
_ADMIT_LUA = """
local function admit(stream, id, fields)
  local task, data = nil, nil
  if fields then
    for i = 1, #fields, 2 do
      if fields[i] == 'task' then task = fields[i + 1] elseif fields[i] == 'data' then data = fields[i + 1] end
    end
  end
  if not task and data then
    local ok, decoded = pcall(cjson.decode, data)
    if ok and type(decoded) == 'table' then task = decoded['task_id'] end
  end
  if type(task) ~= 'string' or task == '' or redis.call('EXISTS', ARGV[3] .. task) == 1 then
    redis.call('XACK', stream, ARGV[1], id)
    return nil
  end
  return redis.call('HINCRBY', ARGV[2], task, 1), data
end
"""

# Read up to ARGV[5] new entries, highest priority first: XREADGROUP each stream in KEYS order until the count is
# reached, admitting each entry. ARGV: group, attempts hash, marker prefix, consumer, count. Returns {entries, wake}:
# entries flat {stream, id, data, deliveries, ...}; wake, when every stream is drained, the newest entry id of each
# stream ('0-0' if empty), from which a blocking XREAD waits for the next entry without a race.
_READ_SCRIPT = _ADMIT_LUA + """
local out, want = {}, tonumber(ARGV[5])
for _, key in ipairs(KEYS) do
  if want <= 0 then
    break
  end
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[4], 'COUNT', want, 'STREAMS', key, '>')
  if reply then
    for _, entry in ipairs(reply[1][2]) do
      want = want - 1
      local n, data = admit(key, entry[1], entry[2])
      if n then
        table.insert(out, key); table.insert(out, entry[1]); table.insert(out, data); table.insert(out, n)
      end
    end
  end
end
local wake = {}
if want > 0 then
  for _, key in ipairs(KEYS) do
    local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
    table.insert(wake, newest[1] and newest[1][1] or '0-0')
  end
end
return {out, wake}
"""

# Take over the entries of dead workers: XAUTOCLAIM on each stream in KEYS the entries idle at least ARGV[5] ms (no
# keepalive for that long), at most ARGV[6] per stream, admitting each. ARGV: group, attempts hash, marker prefix,
# consumer, min idle ms, count. Returns the same flat entries as the read script.
_RECLAIM_SCRIPT = _ADMIT_LUA + """
local out = {}
for _, key in ipairs(KEYS) do
  local reply = redis.call('XAUTOCLAIM', key, ARGV[1], ARGV[4], ARGV[5], '0-0', 'COUNT', ARGV[6])
  for _, entry in ipairs(reply[2]) do
    local n, data = admit(key, entry[1], entry[2])
    if n then
      table.insert(out, key); table.insert(out, entry[1]); table.insert(out, data); table.insert(out, n)
    end
  end
end
return out
"""


class Delivery(NamedTuple):
    """One admitted entry: the message and how many deliveries of its task started (1: the first)."""

    msg: Message
    attempts: int


class TaskWorker:
    """Reads the task streams of ``roles`` in group ``agents`` and runs tasks through ``handlers`` (by kind:
    ``{"agent": ..., "infra": ...}``; the queue's own ``noop`` probe is always served).

    ``chiffon worker`` runs one; ``chiffon serve`` runs one in-process in embedded mode.
    """

    def __init__(self, rt: Runtime, handlers: dict[str, Handler], roles: Iterable[str], *, name: str | None = None,
                 concurrency: int | None = None, reclaim_idle_s: float | None = None) -> None:
        self.rt = rt
        self.handlers = {NOOP: run_noop, **handlers}
        self.roles = sorted({*roles, NOOP})
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.concurrency = concurrency or rt.settings.tasks.concurrency
        self.reclaim_idle_ms = int((reclaim_idle_s or rt.settings.tasks.reclaim_idle_s) * 1000)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self.streams = [stream_for(r, p) for p in PRIORITIES for r in self.roles]  # highest priority first
        self.handled = 0
        self._recorder = Recorder(rt)
        self._held: dict[str, set[str]] = {}  # stream -> entry ids of the tasks running here
        self._wake_after: list[str] = []  # newest entry id per stream after a read that drained them all

    async def run_forever(self) -> None:
        """Take over stale tasks, then read and run new ones until cancelled."""
        for stream in self.streams:
            await self.rt.bus.ensure_group(stream, GROUP)
        await self._announce()
        last_reclaim = 0.0
        loop = asyncio.get_running_loop()
        keepalive = asyncio.create_task(self._keepalive())
        pause = 0.0
        try:
            while True:
                try:
                    await self._recorder.room(self.concurrency * BACKLOG_FACTOR)
                    await self._slots.acquire()
                    self._slots.release()
                    if loop.time() - last_reclaim > self.reclaim_idle_ms / 3000:
                        last_reclaim = loop.time()
                        await self._dispatch(await self._reclaim())
                    await self._dispatch(await self._read())
                    pause = 0.0
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    # Redis went away (restarted, its host rebooted): wait and read again, as long as it takes;
                    # a worker that stopped reading here would look alive and take nothing (and systemd would
                    # never restart it)
                    pause = min(max(pause * 2, 1.0), MAX_BUS_PAUSE_S)
                    log.warning("worker %s: Redis is unreachable (%s); reading again in %.0f s", self.name,
                                exc or type(exc).__name__, pause)
                    await asyncio.sleep(pause)
                    await self._rejoin()
        finally:
            keepalive.cancel()
            await self._recorder.close()

    async def _rejoin(self) -> None:
        """After Redis came back: its consumer groups again (a Redis restarted without its data lost them) and
        this worker's roles. Raises nothing: Redis still away is the next read's to find."""
        with contextlib.suppress(RedisError, OSError):
            for stream in self.streams:
                await self.rt.bus.ensure_group(stream, GROUP)
            await self._announce()
            log.info("worker %s: Redis answers again", self.name)

    async def _reclaim(self) -> list[Delivery]:
        """Take over and admit the entries of dead workers, every stream in one round trip
        (:data:`_RECLAIM_SCRIPT`)."""
        reply = await self.rt.bus.script(_RECLAIM_SCRIPT)(
            keys=self.streams, args=[*_ADMIT_ARGS, self.name, self.reclaim_idle_ms, self.concurrency])
        found = _deliveries(reply)
        if found:
            log.info("worker %s took over %d task(s) of a silent worker", self.name, len(found))
        return found

    async def _read(self) -> list[Delivery]:
        """Up to one entry per free slot, highest priority first, in one round trip (:data:`_READ_SCRIPT`). After
        a read that drained every stream, first wait (at most a second) for an entry newer than the newest one."""
        free = max(1, self._slots._value)
        if self._wake_after:
            await self.rt.bus.wait_for_entries(dict(zip(self.streams, self._wake_after, strict=True)))
        entries, self._wake_after = await self.rt.bus.script(_READ_SCRIPT)(
            keys=self.streams, args=[*_ADMIT_ARGS, self.name, free])
        return _deliveries(entries)

    async def _dispatch(self, deliveries: list[Delivery]) -> None:
        """Start each admitted task. A first delivery starts from its entry's payload; a redelivery is claimed in
        one guarded UPDATE (row to ``running``, its delivery count) and, when its task is already finished or
        cancelled, only published once and acked."""
        if not deliveries:
            return
        now = datetime.now(UTC)
        ready: list[tuple[Message, TaskRecord]] = []
        again: list[Delivery] = []
        for delivery in deliveries:
            task = running_from_entry(delivery.msg.data, delivery.attempts, self.name, now) \
                if delivery.attempts == 1 else None
            if task is None:
                again.append(delivery)
            else:
                ready.append((delivery.msg, task))
                self._recorder.started(task)
        if again:
            rows = await self.rt.store.pool.fetch(
                f"UPDATE queue_tasks AS t SET status = 'running', attempts = u.delivery, worker = $3, "
                f"started_at = coalesce(started_at, now()) FROM unnest($1::text[], $2::int[]) AS u(task, delivery) "
                f"WHERE t.id = u.task AND t.id = ANY($1::text[]) AND t.status IN ('queued', 'running') "
                f"RETURNING {_RETURNING}",
                [d.msg.data.get("task_id") for d in again], [d.attempts for d in again], self.name)
            claimed = {r["id"]: task_from_row(r) for r in rows}
            for delivery in again:
                task = claimed.pop(delivery.msg.data.get("task_id"), None)  # pop: a task listed twice runs once
                if task is None:
                    await self._redelivered(delivery.msg)
                else:
                    ready.append((delivery.msg, task))
        for msg, task in ready:
            await self._slots.acquire()
            running = asyncio.create_task(self._guarded(msg, task))
            self._running.add(running)
            running.add_done_callback(self._running.discard)

    async def _redelivered(self, msg: Message) -> None:
        existing = await self.rt.store.pool.fetchrow(f"SELECT {TASK_COLUMNS} FROM queue_tasks WHERE id = $1",
                                                     msg.data.get("task_id"))
        if existing is not None:
            await publish_result(self.rt, task_from_row(existing), msg)
        else:
            await self.rt.bus.ack(msg.stream, GROUP, msg.id)

    async def _guarded(self, msg: Message, task: TaskRecord) -> None:
        """Run one started task in its slot, then finish it (once) and publish-and-ack its entry. The slot is free
        again as soon as the handler returns; the entry stays in hand (kept alive) until it is acked."""
        held = self._held.setdefault(msg.stream, set())
        held.add(msg.id)
        try:
            with log_context(task=task.id):
                await self._handle(msg, task)
        except (RedisError, OSError) as exc:  # the bus went away: the row is written, the entry waits for a reclaim
            log.warning("task %s: result not published (%s: %s); it stays pending for reclaim", task.id,
                        type(exc).__name__, exc)
        except Exception:
            log.exception("task %s failed in worker %s; it stays pending for reclaim", task.id, self.name)
        finally:
            held.discard(msg.id)

    async def _handle(self, msg: Message, task: TaskRecord) -> None:
        ctx = TaskContext(task, self.rt)
        try:
            outcome = await self._run(ctx)
        finally:
            self._slots.release()
        await self._recorder.finish(msg, task, outcome, ctx.tokens)
        self.handled += 1

    async def _run(self, ctx: TaskContext) -> Outcome | None:
        handler = self.handlers.get(ctx.task.kind)
        if handler is None:
            return Outcome(status="failed", error=f"worker {self.name} has no handler for kind {ctx.task.kind!r}")
        try:
            return await handler(ctx)
        except TaskCancelled:
            await ctx.step(ctx.task.role, "note", {"text": "cancelled; stopped before the next step"})
            return None
        except ChiffonError as exc:
            return Outcome(status="failed", error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a bug must fail the task, not leave it to be redelivered forever
            log.exception("task %s: handler crashed", ctx.task.id)
            report_error("worker", "handler_crashed", f"{ctx.task.kind} handler: {type(exc).__name__}: {exc}", "error",
                         {"task": ctx.task.id, "plan": ctx.task.inputs.get("plan_id")})
            return Outcome(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")

    async def _keepalive(self) -> None:
        """Every third of the reclaim time, re-claim every entry in hand (XCLAIM to ourselves, one command per
        stream): their idle time stays far below the threshold at which another worker would take them."""
        while True:
            await asyncio.sleep(self.reclaim_idle_ms / 3000)
            with contextlib.suppress(RedisError, OSError):  # Redis away: run_forever says so, and rejoins
                await self._announce()
            for stream, ids in list(self._held.items()):
                if not ids:
                    continue
                try:
                    await self.rt.bus.keep_claimed(stream, GROUP, self.name, list(ids))
                except Exception as exc:  # a transient Redis error: the next beat tries again
                    log.warning("keepalive of %d task(s) on %s failed: %s", len(ids), stream, exc)

    async def _announce(self) -> None:
        """Say which roles this worker serves, for as long as it keeps saying it (:func:`workers_serving`)."""
        await self.rt.bus.put(WORKER_KEY.format(name=self.name), json.dumps(
            {"name": self.name, "roles": self.roles, "host": socket.gethostname(), "pid": os.getpid(),
             "concurrency": self.concurrency}), ttl_ms=max(3 * self.reclaim_idle_ms // 3, 2000))

    def abort(self) -> None:
        """Cancel the tasks in hand (Ctrl-C on a CLI that runs its own worker): a handler stops at its next
        await (a run kills Ansible and records itself cancelled); an entry left unacked is taken over later."""
        for running in self._running:
            running.cancel()

    async def close(self) -> None:
        """Wait for the tasks in hand to finish and their rows to be written; stop announcing this worker."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self._recorder.close()
        with contextlib.suppress(Exception):  # the bus may be what stopped; the key then expires by itself
            await self.rt.bus.delete(WORKER_KEY.format(name=self.name))


async def workers_serving(bus: Bus, role: str) -> list[dict[str, Any]]:
    """The live workers that serve ``role`` (each re-announces itself every third of ``tasks.reclaim_idle_s``;
    a stopped one drops out within the reclaim time): ``[{"name", "roles", "host", "pid", "concurrency"}]``."""
    found = [json.loads(v) for v in (await bus.matching(WORKER_KEY.format(name="*"))).values()]
    return sorted((w for w in found if role in w.get("roles", [])), key=lambda w: str(w.get("name")))


def _deliveries(reply: list[Any] | None) -> list[Delivery]:
    """Deliveries from the flat entries of :data:`_READ_SCRIPT`:
    ``[stream, id, data json, deliveries, ...]``."""
    reply = reply or []
    return [Delivery(Message(reply[i], reply[i + 1], json.loads(reply[i + 2])), int(reply[i + 3]))
            for i in range(0, len(reply), 4)]
