"""Queue workers on real PostgreSQL and Redis: priorities, legacy entries, rows written behind, and crash
safety with real `chiffon worker` processes killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from chiffon.shared.queue import TaskWorker
from chiffon.shared.runtime import Runtime
from tests.queue.helpers import queue, results_for

RECLAIM_S = 2.0
CHIFFON = str(Path(sys.executable).parent / "chiffon")


async def test_worker_runs_high_priority_first_and_publishes_each_result_once(rt: Runtime) -> None:
    q = queue(rt)
    low = [await q.submit("noop", f"low {i}", priority="low", kind="noop") for i in range(3)]
    high = [await q.submit("noop", f"high {i}", priority="high", kind="noop") for i in range(3)]
    worker = TaskWorker(rt, {}, ["noop"], name="pytest-priority", concurrency=1)
    runner = asyncio.create_task(worker.run_forever())
    try:
        done = [await q.wait(t.id, 30) for t in low + high]
    finally:
        runner.cancel()
        await worker.close()
    assert all(t.status == "succeeded" and t.completions == 1 for t in done)
    started = {t.id: t.started_at for t in done}
    assert max(started[t.id] for t in high) < min(started[t.id] for t in low)
    counts = await results_for(rt, {t.id for t in done})
    assert set(counts.values()) == {1}


def start_worker(cli_env: dict[str, str], name: str) -> subprocess.Popen[bytes]:
    env = {**cli_env, "CHIFFON_TASKS__RECLAIM_IDLE_S": str(RECLAIM_S), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([CHIFFON, "worker", "--roles", "noop", "--concurrency", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def test_task_of_a_killed_worker_is_reclaimed_and_completed_once(rt: Runtime, cli_env: dict[str, str]) -> None:
    q = queue(rt)
    task = await q.submit("noop", "outlive a crash", {"sleep_s": 4}, kind="noop")
    first = start_worker(cli_env, "first")
    try:
        deadline = time.monotonic() + 60
        while (await q.get(task.id)).status != "running":
            assert time.monotonic() < deadline, first.stderr.read().decode()[-2000:] if first.poll() is not None else ""
            await asyncio.sleep(0.1)
        kill(first)
        second = start_worker(cli_env, "second")
        try:
            done = await q.wait(task.id, 90)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        kill(first)
    assert done.status == "succeeded", done
    assert done.attempts == 2 and done.completions == 1
    assert (await results_for(rt, {task.id}))[task.id] == 1


async def test_200_tasks_with_random_worker_kills_none_lost_none_twice(rt: Runtime, cli_env: dict[str, str]) -> None:
    q = queue(rt)
    rng = random.Random(7)
    ids = {(await q.submit("noop", f"burst {i}", {"sleep_s": rng.uniform(0.2, 1.2)}, kind="noop")).id
           for i in range(200)}
    workers = [start_worker(cli_env, f"w{i}") for i in range(3)]
    kills = 0
    try:
        deadline = time.monotonic() + 300
        while True:
            left = await rt.store.pool.fetchval(
                "SELECT count(*) FROM queue_tasks WHERE id = ANY($1::text[]) AND status <> 'succeeded'", list(ids))
            if left == 0:
                break
            assert time.monotonic() < deadline, f"{left} tasks never finished"
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            busy = {int(r["worker"].rsplit("-", 1)[1]) for r in await rt.store.pool.fetch(
                "SELECT DISTINCT worker FROM queue_tasks WHERE id = ANY($1::text[]) AND status = 'running'", list(ids))}
            victims = [i for i, w in enumerate(workers) if w.pid in busy]
            if kills < 6 and victims:  # kill a worker in the middle of its tasks, start a fresh one
                victim = rng.choice(victims)
                kill(workers[victim])
                workers[victim] = start_worker(cli_env, f"w{victim}-{kills}")
                kills += 1
    finally:
        for w in workers:
            kill(w)
    rows = await rt.store.pool.fetch("SELECT status, completions, attempts FROM queue_tasks WHERE id = ANY($1::text[])",
                                     list(ids))
    assert len(rows) == 200
    assert {r["status"] for r in rows} == {"succeeded"}
    assert {r["completions"] for r in rows} == {1}
    assert kills >= 3 and any(r["attempts"] > 1 for r in rows)  # workers died mid-task and others took over
    counts = await results_for(rt, ids)
    assert len(counts) == 200 and set(counts.values()) == {1}


async def test_an_entry_without_payload_runs_from_its_row(rt: Runtime) -> None:
    """Entries queued before entries carried the task (``data = {task_id}``) are claimed from their row and run."""
    q = queue(rt)
    spec = q.spec("noop", "queued by an older chiffon", {"sleep_s": 0}, kind="noop")
    await rt.store.pool.execute(
        "INSERT INTO queue_tasks (id, kind, role, goal, inputs, priority, session_id, status) "
        "VALUES ($1, 'noop', 'noop', $2, '{}', 'normal', $1, 'queued')", spec.id, spec.goal)
    await rt.bus.redis.xadd("agent_tasks:noop:normal", {"data": json.dumps({"task_id": spec.id})})
    worker = TaskWorker(rt, {}, ["noop"], name="pytest-legacy", concurrency=2)
    runner = asyncio.create_task(worker.run_forever())
    try:
        done = await q.wait(spec.id, 30)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await worker.close()
    assert done.status == "succeeded" and done.attempts == 1 and done.completions == 1
    assert done.worker == "pytest-legacy" and done.started_at is not None
    assert (await results_for(rt, {spec.id}))[spec.id] == 1


async def test_rows_are_written_behind_and_delivery_counts_are_cleared(rt: Runtime) -> None:
    """A task that runs a while shows ``running`` with its worker before it ends; a short one is written once,
    finished; a cancelled one is acked unrun; no delivery count or pending entry is left behind."""
    q = queue(rt)
    slow = await q.submit("noop", "runs a second", {"sleep_s": 1.0}, kind="noop")
    quick = await q.submit("noop", "returns at once", kind="noop")
    dropped = await q.submit("noop", "cancelled before any worker", kind="noop")
    await q.cancel(dropped.id)
    worker = TaskWorker(rt, {}, ["noop"], name="pytest-behind", concurrency=4)
    runner = asyncio.create_task(worker.run_forever())
    try:
        seen = await q.get(slow.id)
        for _ in range(80):
            if seen.status != "queued":
                break
            await asyncio.sleep(0.05)
            seen = await q.get(slow.id)
        assert seen.status == "running" and seen.worker == "pytest-behind" and seen.attempts == 1
        done = [await q.wait(t.id, 30) for t in (slow, quick)]
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await worker.close()
    assert [t.status for t in done] == ["succeeded", "succeeded"]
    assert all(t.attempts == 1 and t.completions == 1 and t.started_at <= t.finished_at for t in done)
    assert (await q.get(dropped.id)).attempts == 0
    for task in (slow, quick, dropped):
        assert not await rt.bus.redis.hexists("chiffon:task-attempts", task.id)
    pending = await rt.bus.redis.xpending_range("agent_tasks:noop:normal", "agents", min="-", max="+", count=1000)
    assert not [p for p in pending if p["consumer"] == "pytest-behind"]
    counts = await results_for(rt, {slow.id, quick.id, dropped.id})
    assert counts == Counter({slow.id: 1, quick.id: 1, dropped.id: 1})
