"""chiffon's task queue against the durable queues people would pick, and against bare Redis Streams.

Throughput: ``--burst`` no-op jobs through one worker with ``--concurrency`` slots in the process that enqueues
them, batch enqueue (32 at a time) where the library has it; seconds from the first enqueue to the last job
finished. chiffon: ``TaskQueue.submit_many`` and a :class:`TaskWorker` (row committed before its entry, result
before its ack), on uvloop like ``chiffon worker``. Peers (``benchmarks/queue_peers.py``, in their own venv ``benchmarks/.peers`` built from
``queue-peers.txt``): pgqueuer, procrastinate, arq (``poll_delay=0.01``) and saq, on the same embedded
PostgreSQL and Redis. Bare streams: XADD pipelined 32 at a time, XREADGROUP COUNT 32, one XACK per batch.
``--rounds`` rounds run every contender once, interleaved, so that a noisy moment on a shared machine hits all;
medians are compared. ``lost`` and ``duplicates`` add up chiffon's tasks over every round.

Recovery: ``--recovery-jobs`` jobs that each sleep 30 s; worker A takes them all, an idle worker B is started,
A is SIGKILLed. ``recovery_s`` is the time from the kill until every one of A's jobs has started again on B
(chiffon: its row shows delivery 2); a peer that has not restarted them within ``--recovery-cap`` seconds gets
``null`` (procrastinate and saq do not retry by default, arq waits for the job timeout plus 10 s).

Prints one JSON line::

    {"chiffon_tps":..,"peers":{name: tps},"vs_best_peer":..,"raw_streams_tps":..,"vs_raw_streams":..,
     "recovery_s":..,"peer_recovery_s":{name: s|null},"lost":0,"duplicates":0,"spread":{name: [min, max]},...}

Targets (issue 17): ``vs_best_peer >= 2.0``, ``recovery_s <= 5``, lost and duplicates 0. ``vs_raw_streams``
is reported, not targeted.

    uv run python benchmarks/queues.py [--burst 2000] [--rounds 3] [--concurrency 10] [--no-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.shared.config import load_settings  # noqa: E402
from chiffon.shared.queue import TaskQueue, TaskWorker  # noqa: E402
from chiffon.shared.runtime import Runtime, open_runtime, stop_embedded  # noqa: E402

PEERS = ("pgqueuer", "procrastinate", "arq", "saq")
PEERS_VENV = ROOT / "benchmarks" / ".peers"
PEERS_REQUIREMENTS = ROOT / "benchmarks" / "queue-peers.txt"
PEERS_SCRIPT = ROOT / "benchmarks" / "queue_peers.py"
CHIFFON = Path(sys.executable).parent / "chiffon"
BATCH = 32
WARM_UP_S = 1.0  # a worker starts this long before its burst (the same in queue_peers.py)
TARGET_VS_BEST_PEER = 2.0
TARGET_RECOVERY_S = 5.0
RECOVERY_SLEEP_S = 30.0

log = logging.getLogger("bench.queue")


def peers_python() -> Path:
    """The peers' venv interpreter, (re)built when ``queue-peers.txt`` changed since the last build."""
    python, stamp = PEERS_VENV / "bin" / "python", PEERS_VENV / "requirements.txt"
    wanted = PEERS_REQUIREMENTS.read_text()
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        subprocess.run(["uv", "venv", "-q", "--allow-existing", "-p", "3.11", str(PEERS_VENV)], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "--python", str(python), "-r", str(PEERS_REQUIREMENTS)],
                       check=True)
        stamp.write_text(wanted)
    return python


def peer_command(python: Path, command: str, peer: str, urls: dict[str, str], *extra: str) -> list[str]:
    return [str(python), str(PEERS_SCRIPT), command, peer, "--pg", urls["pg"], "--redis", urls["redis"], *extra]


def run_peer(python: Path, command: str, peer: str, urls: dict[str, str], *extra: str) -> dict[str, Any]:
    done = subprocess.run(peer_command(python, command, peer, urls, *extra), capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{peer} {command} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def chiffon_burst(rt: Runtime, n: int, concurrency: int) -> tuple[float, int, int]:
    """Seconds for ``n`` no-op tasks through chiffon's queue; (seconds, lost, duplicates)."""
    queue = TaskQueue(rt)
    worker = TaskWorker(rt, {}, ["noop"], name="bench-noop", concurrency=concurrency)
    runner = asyncio.create_task(worker.run_forever())
    await asyncio.sleep(WARM_UP_S)  # the worker is up and waiting, as the peers' are
    started = time.perf_counter()
    ids: list[str] = []
    for first in range(0, n, BATCH):
        specs = [queue.spec("noop", f"noop {i}", kind="noop") for i in range(first, min(n, first + BATCH))]
        ids += [t.id for t in await queue.submit_many(specs)]
    while worker.handled < n and time.perf_counter() - started < 600:  # noqa: ASYNC110 (a counter, no event)
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    await worker.close()
    rows = await rt.store.pool.fetch("SELECT status, completions FROM queue_tasks WHERE id = ANY($1::text[])", ids)
    lost = sum(1 for r in rows if r["status"] != "succeeded") + (n - len(rows))
    duplicates = sum(max(0, r["completions"] - 1) for r in rows)
    return elapsed, lost, duplicates


async def raw_burst(rt: Runtime, n: int) -> float:
    """Seconds for ``n`` entries through bare XADD / XREADGROUP / XACK, consumed while produced."""
    redis, stream, group = rt.bus.redis, "bench:raw", "bench"
    await redis.delete(stream)
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    acked = 0

    async def consume() -> None:
        nonlocal acked
        while acked < n:
            reply = await redis.xreadgroup(group, "c1", {stream: ">"}, count=BATCH, block=100)
            for _, entries in reply or []:
                ids = [entry_id for entry_id, fields in entries if json.loads(fields["data"])]
                await redis.xack(stream, group, *ids)
                acked += len(ids)

    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    for first in range(0, n, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(first, min(n, first + BATCH)):
                pipe.xadd(stream, {"data": json.dumps({"task_id": f"raw-{i}"})})
            await pipe.execute()
    await consumer
    elapsed = time.perf_counter() - started
    await redis.delete(stream)
    return elapsed


def kill(proc: subprocess.Popen[bytes] | asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


async def chiffon_recovery(rt: Runtime, env: dict[str, str], jobs: int, concurrency: int, cap_s: float) -> float | None:
    """Seconds from SIGKILL of the worker holding ``jobs`` sleeping tasks until all run again on a live worker."""
    queue = TaskQueue(rt)
    ids = [t.id for t in await queue.submit_many(
        [queue.spec("noop", f"outlive a kill {i}", {"sleep_s": RECOVERY_SLEEP_S}, kind="noop") for i in range(jobs)])]

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(CHIFFON), "worker", "--roles", "noop", "--concurrency", str(concurrency)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    first = worker()
    second = None
    try:
        held = await poll(lambda: rt.store.pool.fetchval(
            "SELECT count(*) = $2 FROM queue_tasks WHERE id = ANY($1::text[]) AND status = 'running' "
            "AND worker LIKE '%-' || $3::text", ids, jobs, str(first.pid)), 60)
        if not held:
            raise RuntimeError("the first chiffon worker never took the recovery tasks")
        second = worker()
        await asyncio.sleep(3)  # the second worker is up and idle (nothing left to read)
        kill(first)
        killed_at = time.monotonic()
        again = await poll(lambda: rt.store.pool.fetchval(
            "SELECT count(*) = $2 FROM queue_tasks WHERE id = ANY($1::text[]) AND attempts >= 2", ids, jobs), cap_s,
            every=0.02)
        return round(time.monotonic() - killed_at, 3) if again else None
    finally:
        kill(first)
        if second is not None:
            kill(second)
        await rt.store.pool.execute("UPDATE queue_tasks SET status = 'cancelled' WHERE id = ANY($1::text[]) "
                                    "AND status IN ('queued', 'running')", ids)


async def peer_recovery(rt: Runtime, python: Path, peer: str, urls: dict[str, str], jobs: int, concurrency: int,
                        cap_s: float) -> float | None:
    """The same experiment for ``peer``: its jobs record each start in ``qbench:starts:<peer>``."""
    starts_key = f"qbench:starts:{peer}"
    await rt.bus.delete(starts_key)
    await asyncio.to_thread(run_peer, python, "enqueue", peer, urls, "--n", str(jobs), "--sleep",
                            str(RECOVERY_SLEEP_S))

    async def worker() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *peer_command(python, "work", peer, urls, "--concurrency", str(concurrency)),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)

    async def starts() -> list[tuple[str, float]]:
        return [tuple(json.loads(raw)) for raw in await rt.bus.redis.lrange(starts_key, 0, -1)]  # type: ignore[misc]

    first = await worker()
    second = None
    try:
        if not await poll(lambda: _count(starts(), jobs), 60):
            raise RuntimeError(f"{peer}: the first worker never started the recovery jobs")
        second = await worker()
        await asyncio.sleep(3)
        kill(first)
        killed_at = time.time()

        async def all_again() -> bool:
            again = {key for key, at in await starts() if at > killed_at}
            return len(again) >= jobs

        if not await poll(all_again, cap_s, every=0.05):
            return None
        return round(max(at for _, at in await starts()) - killed_at, 3)
    finally:
        kill(first)
        if second is not None:
            kill(second)


async def _count(starts: Any, want: int) -> bool:
    return len({key for key, _ in await starts}) >= want


async def poll(check: Any, timeout_s: float, every: float = 0.1) -> bool:
    """Call ``check()`` (a coroutine function) until it is true or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(every)
    return False


async def main(args: argparse.Namespace) -> dict[str, Any]:
    python = None if args.no_peers else await asyncio.to_thread(peers_python)
    with tempfile.TemporaryDirectory(prefix="chiffon-bench-queue-") as tmp:
        home = Path(tmp) / "home"
        settings = load_settings(home=home)
        env = {**os.environ, "CHIFFON_HOME": str(home), "CHIFFON_TASKS__RECLAIM_IDLE_S": str(settings.tasks.reclaim_idle_s)}
        try:
            async with open_runtime(settings) as rt:
                urls = {"pg": rt.store.url, "redis": rt.bus.url}
                if python is not None:
                    await asyncio.to_thread(run_peer, python, "setup", "", urls)
                runs: dict[str, list[float]] = {"chiffon": [], "raw_streams": [], **{p: [] for p in PEERS}}
                lost = duplicates = 0
                for _ in range(args.rounds):  # interleaved: a noisy moment hits every contender
                    runs["raw_streams"].append(await raw_burst(rt, args.burst))
                    seconds, round_lost, round_duplicates = await chiffon_burst(rt, args.burst, args.concurrency)
                    runs["chiffon"].append(seconds)
                    lost += round_lost
                    duplicates += round_duplicates
                    for peer in PEERS if python is not None else ():
                        reply = await asyncio.to_thread(run_peer, python, "burst", peer, urls, "--n", str(args.burst),
                                                        "--concurrency", str(args.concurrency))
                        runs[peer].append(reply["seconds"])
                tps = {name: round(args.burst / statistics.median(s), 1) for name, s in runs.items() if s}
                spread = {name: [round(args.burst / max(s), 1), round(args.burst / min(s), 1)]
                          for name, s in runs.items() if s}
                recovery = await chiffon_recovery(rt, env, args.recovery_jobs, args.concurrency, args.recovery_cap)
                peers_recovery: dict[str, float | None] = {}
                if python is not None:
                    found = await asyncio.gather(*(peer_recovery(rt, python, peer, urls, args.recovery_jobs,
                                                                 args.concurrency, args.recovery_cap)
                                                   for peer in PEERS))
                    peers_recovery = dict(zip(PEERS, found, strict=True))
        finally:
            await stop_embedded(settings)
    peers = {p: tps[p] for p in PEERS if p in tps}
    best = max(peers.values()) if peers else None
    result: dict[str, Any] = {
        "chiffon_tps": tps["chiffon"], "peers": peers,
        "vs_best_peer": round(tps["chiffon"] / best, 3) if best else None,
        "raw_streams_tps": tps["raw_streams"], "vs_raw_streams": round(tps["chiffon"] / tps["raw_streams"], 3),
        "recovery_s": recovery, "peer_recovery_s": peers_recovery, "recovery_cap_s": args.recovery_cap,
        "lost": lost, "duplicates": duplicates, "spread": spread, "burst": args.burst, "rounds": args.rounds,
        "concurrency": args.concurrency, "reclaim_idle_s": settings.tasks.reclaim_idle_s,
    }
    result["targets_met"] = bool(
        (best is None or result["vs_best_peer"] >= TARGET_VS_BEST_PEER) and recovery is not None
        and recovery <= TARGET_RECOVERY_S and lost == 0 and duplicates == 0)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=2000, help="No-op jobs per burst.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of every contender, interleaved; medians.")
    parser.add_argument("--concurrency", type=int, default=10, help="Slots of the worker in every contender.")
    parser.add_argument("--recovery-jobs", type=int, default=10, help="Jobs held by the worker that is killed.")
    parser.add_argument("--recovery-cap", type=float, default=45.0, help="Seconds to wait for a restart.")
    parser.add_argument("--no-peers", action="store_true", help="chiffon and bare streams only (no peers' venv).")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    import uvloop  # chiffon's part runs on the loop `chiffon worker` runs on

    print(json.dumps(uvloop.run(main(parser.parse_args()))))
