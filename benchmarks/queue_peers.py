"""The durable queues people would pick instead of chiffon's, driven the same way (see ``benchmarks/queues.py``).

This script runs in its own virtual environment (``benchmarks/queue-peers.txt``: arq needs redis-py < 6, chiffon
runs redis-py 8), against the embedded PostgreSQL and Redis that ``queues.py`` opened. It imports nothing of
chiffon. Commands, each printing one JSON line on stdout:

* ``setup --pg DSN``: install pgqueuer's and procrastinate's schemas.
* ``burst PEER --n N --concurrency C --pg DSN --redis URL``: a worker with C slots in this process drains N
  no-op jobs enqueued in batches of 32 (the library's batch call where it has one, else 32 concurrent enqueues);
  prints ``{"seconds": ...}`` from the first enqueue to the N-th job finished.
* ``enqueue PEER --n N --sleep S ...``: enqueue N jobs that each sleep S seconds.
* ``work PEER --concurrency C ...``: run a worker until killed. Each job, as it starts, appends
  ``[key, unix time]`` to the Redis list ``qbench:starts:PEER``; ``queues.py`` reads it to see a job start again
  after its worker was killed.

Each library runs as its own CLI would run it (pgqueuer on uvloop, the others on asyncio's loop) and with its
defaults, but for arq's ``poll_delay`` (0.01 s instead of 0.5 s, as measured in the
issue that asked for this comparison): recovery is whatever the library does on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis

BATCH = 32
WARM_UP_S = 1.0  # a worker starts this long before the burst (the same in queues.py)
STARTS = "qbench:starts:{peer}"


class Counter:
    """Counts finished no-op jobs; ``done`` is set at the ``target``-th."""

    def __init__(self, target: int) -> None:
        self.target, self.n, self.done = target, 0, asyncio.Event()

    def hit(self) -> None:
        self.n += 1
        if self.n >= self.target:
            self.done.set()


async def record_start(redis: aioredis.Redis, peer: str, key: str) -> None:
    await redis.rpush(STARTS.format(peer=peer), json.dumps([key, time.time()]))


def redis_client(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(url)


# --- pgqueuer -------------------------------------------------------------------------------------------------

async def pgqueuer_app(dsn: str, concurrency: int, on_job: Callable[[bytes | None], Awaitable[None]]) -> Any:
    import asyncpg
    from pgqueuer import PgQueuer

    conn = await asyncpg.connect(dsn)
    pgq = PgQueuer.from_asyncpg_connection(conn)

    @pgq.entrypoint("bench")
    async def bench(job: Any) -> None:
        await on_job(job.payload)

    return pgq


async def pgqueuer_run(pgq: Any, concurrency: int) -> None:
    await pgq.run(batch_size=concurrency // 2, max_concurrent_tasks=concurrency)


async def pgqueuer_enqueue(dsn: str, payloads: list[bytes | None]) -> None:
    import asyncpg
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(dsn)
    queries = Queries.from_asyncpg_connection(conn)
    for first in range(0, len(payloads), BATCH):
        chunk = payloads[first:first + BATCH]
        await queries.enqueue(["bench"] * len(chunk), chunk, [0] * len(chunk))
    await conn.close()


# --- procrastinate --------------------------------------------------------------------------------------------

def procrastinate_app(dsn: str, on_job: Callable[[str], Awaitable[None]]) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="bench")
    async def bench(tag: str = "", sleep_s: float = 0.0) -> None:
        await on_job(tag)
        if sleep_s:
            await asyncio.sleep(sleep_s)

    return app


# --- arq ------------------------------------------------------------------------------------------------------

def arq_settings(url: str) -> Any:
    from arq.connections import RedisSettings

    if url.startswith("unix://"):
        return RedisSettings(unix_socket_path=url.removeprefix("unix://"))
    return RedisSettings.from_dsn(url)


def arq_worker(url: str, concurrency: int, on_job: Callable[[str], Awaitable[None]]) -> Any:
    from arq.worker import Worker, func

    async def bench(ctx: dict[str, Any], tag: str = "", sleep_s: float = 0.0) -> None:
        await on_job(tag)
        if sleep_s:
            await asyncio.sleep(sleep_s)

    return Worker(functions=[func(bench, name="bench")], redis_settings=arq_settings(url), max_jobs=concurrency,
                  poll_delay=0.01, handle_signals=False)


async def arq_enqueue(url: str, jobs: list[dict[str, Any]]) -> None:
    from arq import create_pool

    pool = await create_pool(arq_settings(url))
    for first in range(0, len(jobs), BATCH):
        await asyncio.gather(*(pool.enqueue_job("bench", **job) for job in jobs[first:first + BATCH]))
    await pool.aclose()


# --- saq ------------------------------------------------------------------------------------------------------

def saq_queue(url: str) -> Any:
    """saq's Redis queue (its ``from_url`` knows no ``unix://``; redis-py's does)."""
    from saq.queue.redis import RedisQueue

    return RedisQueue(aioredis.Redis.from_url(url), name="qbench")


def saq_worker(url: str, concurrency: int, on_job: Callable[[str], Awaitable[None]]) -> Any:
    from saq import Worker

    async def bench(ctx: dict[str, Any], tag: str = "", sleep_s: float = 0.0) -> None:
        await on_job(tag)
        if sleep_s:
            await asyncio.sleep(sleep_s)

    return Worker(saq_queue(url), functions=[("bench", bench)], concurrency=concurrency)


async def saq_enqueue(url: str, jobs: list[dict[str, Any]]) -> None:
    queue = saq_queue(url)
    await queue.connect()
    for first in range(0, len(jobs), BATCH):
        await asyncio.gather(*(queue.enqueue("bench", **job) for job in jobs[first:first + BATCH]))
    await queue.disconnect()


# --- commands -------------------------------------------------------------------------------------------------

async def enqueue(peer: str, pg: str, url: str, jobs: list[dict[str, Any]]) -> None:
    if peer == "pgqueuer":
        await pgqueuer_enqueue(pg, [json.dumps(job).encode() for job in jobs])
    elif peer == "procrastinate":
        app = procrastinate_app(pg, lambda key: asyncio.sleep(0))
        async with app.open_async():
            task = app.tasks["bench"]
            for first in range(0, len(jobs), BATCH):
                await task.batch_defer_async(*jobs[first:first + BATCH])
    elif peer == "arq":
        await arq_enqueue(url, jobs)
    elif peer == "saq":
        await saq_enqueue(url, jobs)
    else:
        raise SystemExit(f"unknown peer {peer!r}")


async def work(peer: str, pg: str, url: str, concurrency: int, on_job: Callable[[str], Awaitable[None]],
               until: asyncio.Event | None = None) -> None:
    """Run ``peer``'s worker until ``until`` is set (or forever)."""
    if peer == "pgqueuer":
        async def on_payload(payload: bytes | None) -> None:
            job = json.loads(payload or b"{}")
            await on_job(job.get("tag", ""))
            if job.get("sleep_s"):
                await asyncio.sleep(job["sleep_s"])

        runner: Awaitable[Any] = pgqueuer_run(await pgqueuer_app(pg, concurrency, on_payload), concurrency)
        app_cm = None
    elif peer == "procrastinate":
        app = procrastinate_app(pg, on_job)
        app_cm = app.open_async()
        await app_cm.__aenter__()
        runner = app.run_worker_async(concurrency=concurrency)
    elif peer == "arq":
        runner, app_cm = arq_worker(url, concurrency, on_job).async_run(), None
    elif peer == "saq":
        runner, app_cm = saq_worker(url, concurrency, on_job).start(), None
    else:
        raise SystemExit(f"unknown peer {peer!r}")
    task = asyncio.ensure_future(runner)
    try:
        if until is None:
            await task
        else:
            done_wait = asyncio.ensure_future(until.wait())
            await asyncio.wait({task, done_wait}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()  # a worker that stopped early raises here
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if app_cm is not None:
            await app_cm.__aexit__(None, None, None)


async def burst(peer: str, pg: str, url: str, n: int, concurrency: int) -> float:
    counter = Counter(n)

    async def on_job(_: str) -> None:
        counter.hit()

    jobs = [{"tag": str(i)} for i in range(n)]
    worker = asyncio.ensure_future(work(peer, pg, url, concurrency, on_job, until=counter.done))
    await asyncio.sleep(WARM_UP_S)  # the worker is connected and waiting, as chiffon's is
    started = time.perf_counter()
    await enqueue(peer, pg, url, jobs)
    await worker
    return time.perf_counter() - started


async def setup(pg: str) -> None:
    import asyncpg
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(pg)
    await Queries.from_asyncpg_connection(conn).install()
    await conn.close()
    app = procrastinate_app(pg, lambda key: asyncio.sleep(0))
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.command == "setup":
        await setup(args.pg)
        return {"ok": True}
    if args.command == "burst":
        return {"seconds": await burst(args.peer, args.pg, args.redis, args.n, args.concurrency)}
    if args.command == "enqueue":
        await enqueue(args.peer, args.pg, args.redis,
                      [{"tag": f"{args.peer}-{i}", "sleep_s": args.sleep} for i in range(args.n)])
        return {"enqueued": args.n}
    redis = redis_client(args.redis)
    await work(args.peer, args.pg, args.redis, args.concurrency, lambda key: record_start(redis, args.peer, key))
    return {}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["setup", "burst", "enqueue", "work"])
    parser.add_argument("peer", nargs="?", default="", choices=["", "pgqueuer", "procrastinate", "arq", "saq"])
    parser.add_argument("--pg", required=True, help="PostgreSQL DSN.")
    parser.add_argument("--redis", default="", help="Redis URL (unix:///path/redis.sock for a socket).")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    if args.peer == "pgqueuer":  # as pgqueuer's own CLI runs its worker
        import uvloop

        print(json.dumps(uvloop.run(main(args))), flush=True)
    else:
        print(json.dumps(asyncio.run(main(args))), flush=True)
