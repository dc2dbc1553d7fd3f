"""A bounded priority queue in front of a backend with ``slots`` concurrent requests.

Local models are scarce: a 4 GB GPU serves one or two requests at a time. Waiters
are ordered by (priority, arrival): interactive requests go ahead of background
agents, first come first served within a class. Past ``max_queue`` waiters the
gate refuses at once (:class:`QueueFull`) so the router can fall back instead of
piling up.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from chiffon.shared.errors import BackendError

PRIORITY = {"interactive": 0, "background": 1}

PositionCallback = Callable[[int], Awaitable[None]]


class QueueFull(BackendError):
    """The backend's queue is at max_queue; try another tier."""


class PriorityGate:
    """At most ``slots`` holders; waiters served by priority, then arrival."""

    def __init__(self, name: str, slots: int, max_queue: int) -> None:
        self.name = name
        self.slots = slots
        self.max_queue = max_queue
        self.in_use = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None], PositionCallback | None]] = []
        self._seq = itertools.count()

    @property
    def depth(self) -> int:
        """Requests waiting (not counting those holding a slot)."""
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self, priority: str = "interactive", on_position: PositionCallback | None = None) -> AsyncIterator[None]:
        """Hold a slot for the body of the ``async with``.

        ``on_position(n)`` is awaited with the 1-based queue position while waiting (not called when a
        slot is free at once).

        Raises:
            QueueFull: ``max_queue`` requests are already waiting.
        """
        await self._acquire(PRIORITY[priority], on_position)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, rank: int, on_position: PositionCallback | None) -> None:
        if self.in_use < self.slots and not self._waiters:
            self.in_use += 1
            return
        if len(self._waiters) >= self.max_queue:
            raise QueueFull(self.name, f"queue full ({self.max_queue} waiting, {self.slots} slot(s) busy)", transient=True)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (rank, next(self._seq), future, on_position)
        heapq.heappush(self._waiters, entry)
        await self._announce()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # the slot was handed over just as we were cancelled
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def _release(self) -> None:
        while self._waiters:
            _, _, future, _ = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot passes straight to the next waiter
                asyncio.get_running_loop().create_task(self._announce())
                return
        self.in_use -= 1

    async def _announce(self) -> None:
        for position, (_, _, future, callback) in enumerate(sorted(self._waiters), start=1):
            if callback is not None and not future.done():
                try:
                    await callback(position)
                except Exception:  # progress is best effort; a closed client must not break the queue
                    pass
