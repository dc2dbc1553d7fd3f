"""Workers of the agent task queue: read, claim, run, finish, publish and ack (see :mod:`servers.tasks.queue`).

A :class:`TaskWorker` serves the streams of its roles in the consumer group
``agents``. Reads are batched (as many entries as it has free slots), each batch
is claimed in one UPDATE, and finished tasks are group-committed by
:class:`_Finisher`: one guarded UPDATE and one Redis pipeline of
publish-and-ack scripts for whatever finished while the previous flush ran.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Iterable
from typing import Any

from servers.tasks.queue import (
    _COLUMNS, GROUP, NOOP, PRIORITIES, Handler, Outcome, TaskCancelled, TaskContext, TaskQueue, TaskRecord, _publish_on,
    _record, publish_result, run_noop, stream_for,
)
from shared.bus import Message
from shared.errors import ChiffonError
from shared.runtime import Runtime

log = logging.getLogger(__name__)


class TaskWorker:
    """Reads the task streams of ``roles`` in group ``agents`` and runs tasks through ``handlers`` (by kind).

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
        self.streams = {p: [stream_for(r, p) for r in self.roles] for p in PRIORITIES}
        self.handled = 0
        self._finisher = _Finisher(rt)
        self._held: dict[str, set[str]] = {}  # stream -> entry ids of the tasks running here

    async def run_forever(self) -> None:
        """Take over stale tasks, then read and run new ones until cancelled."""
        bus = self.rt.bus
        for streams in self.streams.values():
            for stream in streams:
                await bus.ensure_group(stream, GROUP)
        last_reclaim = 0.0
        loop = asyncio.get_running_loop()
        keepalive = asyncio.create_task(self._keepalive())
        try:
            while True:
                await self._slots.acquire()
                self._slots.release()
                if loop.time() - last_reclaim > self.reclaim_idle_ms / 3000:
                    last_reclaim = loop.time()
                    await self._dispatch(await self._reclaim())
                await self._dispatch(await self._read())
        finally:
            keepalive.cancel()

    async def _reclaim(self) -> list[Message]:
        found: list[Message] = []
        for streams in self.streams.values():
            for stream in streams:
                found += await self.rt.bus.claim_stale(stream, GROUP, self.name, min_idle_ms=self.reclaim_idle_ms,
                                                       count=self.concurrency)
        if found:
            log.info("worker %s took over %d stale task(s)", self.name, len(found))
        return found

    async def _read(self) -> list[Message]:
        """Highest priority first without waiting; then block on every stream for a second."""
        free = max(1, self._slots._value)  # noqa: SLF001  (asyncio.Semaphore has no public reading)
        redis = self.rt.bus.redis
        for priority in PRIORITIES:
            reply = await redis.xreadgroup(GROUP, self.name, {s: ">" for s in self.streams[priority]}, count=free)
            if reply:
                return _decoded(reply)
        everything = {s: ">" for p in PRIORITIES for s in self.streams[p]}
        return _decoded(await redis.xreadgroup(GROUP, self.name, everything, count=1, block=1000))

    async def _dispatch(self, msgs: list[Message]) -> None:
        """Claim a batch of entries in one UPDATE (row to ``running``, attempts + 1), then run each claimed task.

        An entry whose task is already finished or cancelled (a redelivery) is published once and acked.
        """
        if not msgs:
            return
        rows = await self.rt.store.pool.fetch(
            f"UPDATE agent_tasks SET status = 'running', attempts = attempts + 1, worker = $2, "
            f"started_at = coalesce(started_at, now()) WHERE id = ANY($1::text[]) AND status IN ('queued', 'running') "
            f"RETURNING {_COLUMNS}", [m.data.get("task_id") for m in msgs], self.name)
        claimed = {r["id"]: _record(r) for r in rows}
        for msg in msgs:
            task = claimed.pop(msg.data.get("task_id"), None)  # pop: a task listed twice runs once
            if task is None:
                await self._redelivered(msg)
                continue
            await self._slots.acquire()
            running = asyncio.create_task(self._guarded(msg, task))
            self._running.add(running)
            running.add_done_callback(self._running.discard)

    async def _redelivered(self, msg: Message) -> None:
        existing = await self.rt.store.pool.fetchrow(f"SELECT {_COLUMNS} FROM agent_tasks WHERE id = $1",
                                                     msg.data.get("task_id"))
        if existing is not None:
            await publish_result(self.rt, _record(existing), msg)
        else:
            await self.rt.bus.ack(msg.stream, GROUP, msg.id)

    async def _guarded(self, msg: Message, task: TaskRecord) -> None:
        try:
            await self.handle(msg, task)
        except Exception:
            log.exception("task %s failed in worker %s; it stays pending for reclaim", task.id, self.name)
        finally:
            self._slots.release()

    async def handle(self, msg: Message, task: TaskRecord) -> None:
        """Run one claimed task, finish it (once) and publish-and-ack its entry (see the module docstring)."""
        held = self._held.setdefault(msg.stream, set())
        held.add(msg.id)
        ctx = TaskContext(task, self.rt)
        try:
            outcome = await self._run(ctx)
        finally:
            held.discard(msg.id)
        await self._finisher.finish(msg, task, outcome, ctx.tokens)
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
            return Outcome(status="failed", error=f"internal error: {type(exc).__name__}: {exc}")

    async def _keepalive(self) -> None:
        """Every third of the reclaim time, re-claim every entry in hand (XCLAIM to ourselves, one command per
        stream): their idle time stays far below the threshold at which another worker would take them."""
        while True:
            await asyncio.sleep(self.reclaim_idle_ms / 3000)
            for stream, ids in list(self._held.items()):
                if not ids:
                    continue
                try:
                    await self.rt.bus.redis.xclaim(stream, GROUP, self.name, 0, list(ids), justid=True)
                except Exception as exc:  # a transient Redis error: the next beat tries again
                    log.warning("keepalive of %d task(s) on %s failed: %s", len(ids), stream, exc)

    async def close(self) -> None:
        """Wait for the tasks in hand to finish."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


class _Finisher:
    """Group commit of finished tasks: whatever finished while the previous flush ran goes in the next one.

    One flush is one guarded UPDATE over every task in it (``WHERE status = 'running'``: a task cancelled
    meanwhile keeps its cancel) and one Redis pipeline of publish-and-ack scripts. Alone, a task is flushed
    at once; under load, batches form by themselves.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._pending: list[tuple[Message, TaskRecord, Outcome | None, int, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def finish(self, msg: Message, task: TaskRecord, outcome: Outcome | None, tokens: int) -> None:
        """Finish ``task`` (``outcome`` None: it was cancelled, only publish and ack); returns once stored."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((msg, task, outcome, tokens, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_all())
        await done

    async def _flush_all(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._flush(batch)
            except Exception as exc:  # every waiter gets the error; its task stays pending for reclaim
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def _flush(self, batch: list[tuple[Message, TaskRecord, Outcome | None, int, asyncio.Future[None]]]) -> None:
        ending = [(task, outcome, tokens) for _, task, outcome, tokens, _ in batch if outcome is not None]
        finished: dict[str, TaskRecord] = {}
        if ending:
            rows = await self.rt.store.pool.fetch(
                f"UPDATE agent_tasks AS t SET status = u.status, result = u.result::jsonb, error = u.error, "
                f"finished_at = now(), completions = t.completions + 1, tokens_used = t.tokens_used + u.tokens "
                f"FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[]) "
                f"AS u(id, status, result, error, tokens) WHERE t.id = u.id AND t.status = 'running' RETURNING t.id",
                [t.id for t, _, _ in ending], [o.status for _, o, _ in ending],  # type: ignore[union-attr]
                [None if o.result is None else json.dumps(o.result, default=str) for _, o, _ in ending],  # type: ignore[union-attr]
                [o.error for _, o, _ in ending], [n for _, _, n in ending])  # type: ignore[union-attr]
            updated = {r["id"] for r in rows}
            finished = {t.id: t.model_copy(update={"status": o.status, "error": o.error})  # type: ignore[union-attr]
                        for t, o, _ in ending if t.id in updated}
        records = []
        for _, task, _, _, _ in batch:  # not updated: cancelled (or finished elsewhere) meanwhile
            records.append(finished.get(task.id) or await TaskQueue(self.rt).get(task.id))
        async with self.rt.bus.redis.pipeline(transaction=False) as pipe:
            for (msg, *_), record in zip(batch, records):
                await _publish_on(pipe, self.rt, record, msg)  # queued: runs in execute()
            await pipe.execute()


def _decoded(reply: Any) -> list[Message]:
    out = []
    for stream, entries in reply or []:
        for msg_id, fields in entries:
            if fields:
                out.append(Message(stream, msg_id, json.loads(fields["data"])))
    return out
