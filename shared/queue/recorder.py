"""Group commit of task rows for a worker (:mod:`chiffon.shared.queue.worker`): starts and finishes written
behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, NamedTuple

from chiffon.shared.bus import Message
from chiffon.shared.queue.engine import Finished, Outcome, TaskQueue, TaskRecord, publish_results
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

CLAIM_WRITE_DELAY_S = 0.05  # a task still running this long after its start gets its "running" row written


class _Ending(NamedTuple):
    msg: Message
    task: TaskRecord
    outcome: Outcome | None  # None: cancelled while running; only published and acked
    tokens: int
    done: asyncio.Future[None]


class Recorder:
    """Group commit of task rows: whatever started or finished while the previous flush ran goes in the next one.

    One flush is one guarded UPDATE and one call of the publish-and-ack script. A finished task is written from
    ``queued`` or ``running`` (a task cancelled meanwhile keeps its cancel; one finished elsewhere is not finished
    twice); a started one is written ``running`` only while still ``queued``, and only once it has run
    :data:`CLAIM_WRITE_DELAY_S` unfinished, so a short task's start and finish are one row write. A lone finish is
    flushed at once; under load, batches form by themselves.
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._started: dict[str, TaskRecord] = {}
        self._ending: list[_Ending] = []
        self._wake = asyncio.Event()
        self._flushed = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    async def room(self, limit: int) -> None:
        """Wait while more than ``limit`` finished tasks wait for their row write (backpressure on reading)."""
        while len(self._ending) > limit:
            self._flushed.clear()
            await self._flushed.wait()

    def started(self, task: TaskRecord) -> None:
        """Note that ``task`` started here; its ``running`` row is written by a later flush."""
        self._started[task.id] = task
        self._kick()

    async def finish(self, msg: Message, task: TaskRecord, outcome: Outcome | None, tokens: int) -> None:
        """Finish ``task``; returns once its row is stored and its result published and its entry acked."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ending.append(_Ending(msg, task, outcome, tokens, done))
        self._wake.set()
        self._kick()
        await done

    async def close(self) -> None:
        """Write what is pending and stop."""
        if self._flusher is not None and not self._flusher.done():
            self._wake.set()
            await asyncio.gather(self._flusher, return_exceptions=True)

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_all())

    async def _flush_all(self) -> None:
        while self._ending or self._started:
            if not self._ending:  # only starts pending: give short tasks the time to finish first
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), CLAIM_WRITE_DELAY_S)
            self._wake.clear()
            batch, self._ending = self._ending, []
            ending_ids = {e.task.id for e in batch}
            starts = [t for t in self._started.values() if t.id not in ending_ids]
            self._started = {}
            try:
                await self._flush(batch, starts)
            except Exception as exc:  # every waiter gets the error; its task stays pending for reclaim
                log.warning("writing %d task row(s) failed: %s", len(batch) + len(starts), exc)
                for ending in batch:
                    if not ending.done.done():
                        ending.done.set_exception(exc)
            else:
                for ending in batch:
                    if not ending.done.done():
                        ending.done.set_result(None)
            self._flushed.set()

    async def _flush(self, batch: list[_Ending], starts: list[TaskRecord]) -> None:
        rows: list[tuple[TaskRecord, str, Any, str | None, int]] = [
            (e.task, e.outcome.status, e.outcome.result, e.outcome.error, e.tokens) for e in batch if e.outcome is not None]
        rows += [(t, "running", None, None, 0) for t in starts]
        updated: set[str] = set()
        if rows:
            updated = {r["id"] for r in await self.rt.store.pool.fetch(
                "UPDATE queue_tasks AS t SET status = u.status, result = u.result::jsonb, error = u.error, "
                "attempts = greatest(t.attempts, u.attempts), worker = u.worker, "
                "started_at = coalesce(t.started_at, u.started_at), "
                "finished_at = CASE WHEN u.status = 'running' THEN NULL ELSE now() END, "
                "completions = t.completions + (u.status <> 'running')::int, tokens_used = t.tokens_used + u.tokens "
                "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::text[], "
                "$8::timestamptz[]) AS u(id, status, result, error, tokens, attempts, worker, started_at) "
                "WHERE t.id = u.id AND t.id = ANY($1::text[]) "  # ANY: a primary-key lookup, not a scan of every task
                "AND (t.status = 'queued' OR (t.status = 'running' AND u.status <> 'running')) "
                "RETURNING t.id",
                [t.id for t, *_ in rows], [status for _, status, *_ in rows],
                [None if result is None else json.dumps(result, default=str) for _, _, result, _, _ in rows],
                [error for *_, error, _ in rows], [tokens for *_, tokens in rows], [t.attempts for t, *_ in rows],
                [t.worker for t, *_ in rows], [t.started_at for t, *_ in rows])}
        published: list[tuple[Finished | TaskRecord, Message | None]] = []
        for ending in batch:  # not updated: cancelled (or finished elsewhere) meanwhile; publish what the row says
            if ending.outcome is not None and ending.task.id in updated:
                task = ending.task
                published.append((Finished(task.id, ending.outcome.status, task.role, task.priority,
                                           ending.outcome.error), ending.msg))
            else:
                published.append((await TaskQueue(self.rt).get(ending.task.id), ending.msg))
        await publish_results(self.rt, published)
