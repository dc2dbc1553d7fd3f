"""The queue engine on real PostgreSQL and Redis: submit, input checks by kind, idempotency and cancel."""

from __future__ import annotations

import asyncio

import pytest

from chiffon.orchestrator.runs import check_infra_inputs
from chiffon.shared.errors import InvalidInput, NotFound, TaskStateError
from chiffon.shared.queue import INFRA, TaskQueue, TaskWorker
from chiffon.shared.runtime import Runtime
from tests.queue.helpers import queue, results_for


async def test_submit_validates_and_changes_nothing_on_bad_input(rt: Runtime) -> None:
    q = queue(rt)
    before = await rt.store.pool.fetchval("SELECT count(*) FROM queue_tasks")
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
    assert await rt.store.pool.fetchval("SELECT count(*) FROM queue_tasks") == before
    with pytest.raises(NotFound, match="no task"):
        await q.get("task-000000000000")


async def test_idempotency_key_returns_the_first_task(rt: Runtime) -> None:
    q = queue(rt)
    first = await q.submit("noop", "probe", kind="noop", idempotency_key="deploy-42")
    again = await q.submit("noop", "probe again", kind="noop", idempotency_key="deploy-42")
    assert again.id == first.id and again.goal == "probe"
    assert await rt.store.pool.fetchval("SELECT count(*) FROM queue_tasks WHERE idempotency_key='deploy-42'") == 1


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


async def test_the_check_of_a_kind_refuses_its_tasks_and_stores_nothing(rt: Runtime) -> None:
    q = TaskQueue(rt, checks={INFRA: check_infra_inputs})
    before = await rt.store.pool.fetchval("SELECT count(*) FROM queue_tasks")
    with pytest.raises(InvalidInput, match="inputs: an infra task has role infra and inputs.plan_id"):
        await q.submit(INFRA, "run nothing", {}, kind=INFRA)
    with pytest.raises(InvalidInput, match="an infra task has role infra"):
        await q.submit("developer", "run plan-1", {"plan_id": "plan-1"}, kind=INFRA)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM queue_tasks") == before
    probe = await q.submit("noop", "a kind without a check", kind="noop")
    assert probe.status == "queued" and probe.kind == "noop"
