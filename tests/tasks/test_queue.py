"""The agent task queue on real PostgreSQL and Redis: submit, priorities, cancel, idempotency,
and crash safety with real `chiffon worker` processes killed with SIGKILL."""

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

import pytest

from chiffon.servers.tasks.queue import TaskQueue
from chiffon.servers.tasks.roles import PIPELINE, load_roles
from chiffon.servers.tasks.worker import TaskWorker
from chiffon.shared.bus import AGENT_RESULTS
from chiffon.shared.errors import InvalidInput, NotFound, TaskStateError
from chiffon.shared.runtime import Runtime

RECLAIM_S = 2.0
CHIFFON = str(Path(sys.executable).parent / "chiffon")


def queue(rt: Runtime) -> TaskQueue:
    return TaskQueue(rt, [*load_roles(), PIPELINE])


async def results_for(rt: Runtime, ids: set[str]) -> Counter[str]:
    """How many agent_results messages each of ``ids`` has (the whole stream is read)."""
    seen: Counter[str] = Counter()
    last = "-"
    while True:
        batch = await rt.bus.redis.xrange(AGENT_RESULTS, min=last, count=5000)
        batch = [e for e in batch if e[0] != last]
        if not batch:
            return seen
        for _entry_id, fields in batch:
            task_id = json.loads(fields["data"]).get("task_id")
            if task_id in ids:
                seen[task_id] += 1
        last = batch[-1][0]


async def test_submit_validates_and_changes_nothing_on_bad_input(rt: Runtime) -> None:
    q = queue(rt)
    before = await rt.store.pool.fetchval("SELECT count(*) FROM agent_tasks")
    with pytest.raises(InvalidInput, match="goal: is empty"):
        await q.submit("developer", "   ")
    with pytest.raises(InvalidInput, match="at most 4000"):
        await q.submit("developer", "x" * 4001)
    with pytest.raises(InvalidInput, match="unknown role 'wizard'.*developer.*pipeline"):
        await q.submit("wizard", "do magic")
    with pytest.raises(InvalidInput, match="priority"):
        await q.submit("developer", "fix it", priority="urgent")
    with pytest.raises(InvalidInput, match="inputs"):
        await q.submit("developer", "fix it", inputs=["not", "an", "object"])  # type: ignore[arg-type]
    assert await rt.store.pool.fetchval("SELECT count(*) FROM agent_tasks") == before
    with pytest.raises(NotFound, match="no task"):
        await q.get("task-000000000000")


async def test_idempotency_key_returns_the_first_task(rt: Runtime) -> None:
    q = queue(rt)
    first = await q.submit("noop", "probe", kind="noop", idempotency_key="deploy-42")
    again = await q.submit("noop", "probe again", kind="noop", idempotency_key="deploy-42")
    assert again.id == first.id and again.goal == "probe"
    assert await rt.store.pool.fetchval("SELECT count(*) FROM agent_tasks WHERE idempotency_key='deploy-42'") == 1


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


async def test_cancel_queued_running_and_finished(rt: Runtime) -> None:
    q = queue(rt)
    queued = await q.submit("noop", "never runs", kind="noop")
    cancelled = await q.cancel(queued.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(TaskStateError, match="already cancelled"):
        await q.cancel(queued.id)
    slow = await q.submit("noop", "slow", {"sleep_s": 30}, kind="noop")
    worker = TaskWorker(rt, {}, ["noop"], name="pytest-cancel", concurrency=2)
    runner = asyncio.create_task(worker.run_forever())
    try:
        for _ in range(100):
            if (await q.get(slow.id)).status == "running":
                break
            await asyncio.sleep(0.1)
        await q.cancel(slow.id, "changed my mind")
        assert (await q.get(queued.id)).attempts == 0  # the worker skipped the cancelled one
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    final = await q.get(slow.id)
    assert final.status == "cancelled" and final.error == "changed my mind" and final.completions == 0
    assert (await results_for(rt, {slow.id}))[slow.id] == 1


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
                "SELECT count(*) FROM agent_tasks WHERE id = ANY($1::text[]) AND status <> 'succeeded'", list(ids))
            if left == 0:
                break
            assert time.monotonic() < deadline, f"{left} tasks never finished"
            await asyncio.sleep(rng.uniform(0.3, 0.8))
            busy = {int(r["worker"].rsplit("-", 1)[1]) for r in await rt.store.pool.fetch(
                "SELECT DISTINCT worker FROM agent_tasks WHERE id = ANY($1::text[]) AND status = 'running'", list(ids))}
            victims = [i for i, w in enumerate(workers) if w.pid in busy]
            if kills < 6 and victims:  # kill a worker in the middle of its tasks, start a fresh one
                victim = rng.choice(victims)
                kill(workers[victim])
                workers[victim] = start_worker(cli_env, f"w{victim}-{kills}")
                kills += 1
    finally:
        for w in workers:
            kill(w)
    rows = await rt.store.pool.fetch("SELECT status, completions, attempts FROM agent_tasks WHERE id = ANY($1::text[])",
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
        "INSERT INTO agent_tasks (id, kind, role, goal, inputs, priority, session_id, status) "
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
