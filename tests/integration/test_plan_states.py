"""Every plan status change goes through plan_states.transition against the real PostgreSQL: allowed moves
happen, forbidden ones change nothing, and the status guard still decides races."""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
from pathlib import Path

import pytest

from chiffon.servers.ansible import plan_states, plans
from chiffon.servers.ansible.plan_states import STATUSES, TRANSITIONS
from chiffon.shared.errors import PlanStateError
from chiffon.shared.runtime import Runtime

FORBIDDEN = [pair for pair in sorted(itertools.product(STATUSES, STATUSES)) if pair not in TRANSITIONS]
ROOT = Path(__file__).resolve().parents[2]


async def stored(rt: Runtime, status: str, *, blocked: str | None = None) -> str:
    """A minimal plan row in ``status``; its id."""
    plan_id = f"plan-states-{secrets.token_hex(4)}"
    await rt.store.pool.execute(
        "INSERT INTO plans (id, repo, playbook, inventory, risk, status, blocked_reason) "
        "VALUES ($1, '/srv/iac', 'site.yml', 'hosts.ini', 'low', $2, $3)", plan_id, status, blocked)
    return plan_id


async def status_of(rt: Runtime, plan_id: str) -> str:
    return await rt.store.pool.fetchval("SELECT status FROM plans WHERE id=$1", plan_id)  # type: ignore[no-any-return]


@pytest.mark.parametrize(("src", "to"), FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
async def test_a_forbidden_transition_is_refused_and_changes_nothing(rt: Runtime, src: str, to: str) -> None:
    plan_id = await stored(rt, src)
    before = await rt.store.pool.fetchval("SELECT updated_at FROM plans WHERE id=$1", plan_id)
    with pytest.raises(PlanStateError, match=f"cannot go from {src} to {to}"):
        await plan_states.transition(rt.store.pool, plan_id, to, from_=src)
    assert await status_of(rt, plan_id) == src
    assert await rt.store.pool.fetchval("SELECT updated_at FROM plans WHERE id=$1", plan_id) == before


@pytest.mark.parametrize(("src", "to"), sorted(TRANSITIONS), ids=[f"{a}->{b}" for a, b in sorted(TRANSITIONS)])
async def test_an_allowed_transition_moves_the_plan(rt: Runtime, src: str, to: str) -> None:
    plan_id = await stored(rt, src)
    assert await plan_states.transition(rt.store.pool, plan_id, to, from_=src) is True
    assert await status_of(rt, plan_id) == to


async def test_a_plan_not_in_the_expected_status_is_left_alone(rt: Runtime) -> None:
    plan_id = await stored(rt, "paused")
    assert await plan_states.start_run(rt.store.pool, plan_id) is False
    assert await status_of(rt, plan_id) == "paused"


async def test_only_one_of_two_concurrent_executors_claims_a_plan(rt: Runtime) -> None:
    plan_id = await stored(rt, "approved")
    claims = await asyncio.gather(*(plan_states.start_run(rt.store.pool, plan_id) for _ in range(2)))
    assert sorted(claims) == [False, True]
    assert await status_of(rt, plan_id) == "running"


async def test_a_blocked_plan_is_not_approved_even_by_the_state_machine(rt: Runtime) -> None:
    plan_id = await stored(rt, "pending_approval", blocked="no host matched")
    assert await plan_states.transition(rt.store.pool, plan_id, "approved", from_="pending_approval",
                                        unblocked=True) is False
    assert await plan_states.transition(rt.store.pool, plan_id, "rejected", from_="pending_approval") is True
    assert await status_of(rt, plan_id) == "rejected"


async def test_pause_keeps_the_reason_and_resume_clears_it(rt: Runtime) -> None:
    plan_id = await stored(rt, "approved")
    assert await plans.pause(rt, plan_id, "web1 is busy")
    assert await plans.pause(rt, plan_id, "web1 is offline")
    assert await rt.store.pool.fetchval("SELECT paused_reason FROM plans WHERE id=$1", plan_id) == "web1 is offline"
    assert await plans.resume(rt, plan_id)
    row = await rt.store.pool.fetchrow("SELECT status, paused_reason FROM plans WHERE id=$1", plan_id)
    assert (row["status"], row["paused_reason"]) == ("approved", None)


async def test_a_run_ends_only_as_succeeded_or_failed(rt: Runtime) -> None:
    plan_id = await stored(rt, "running")
    with pytest.raises(PlanStateError, match="cannot go from running to rejected"):
        await plan_states.finish_run(rt.store.pool, plan_id, "rejected")
    assert await plan_states.finish_run(rt.store.pool, plan_id, "failed")
    assert await status_of(rt, plan_id) == "failed"


async def test_a_status_change_sets_no_column_it_was_not_made_for(rt: Runtime) -> None:
    plan_id = await stored(rt, "approved")
    with pytest.raises(PlanStateError, match="cannot set risk"):
        await plan_states.transition(rt.store.pool, plan_id, "paused", from_="approved", risk="low")
    assert await status_of(rt, plan_id) == "approved"


def test_plan_status_is_written_only_by_the_state_machine() -> None:
    writes = re.compile(r"UPDATE\s+plans\s+SET[^\"']*\bstatus\s*=", re.IGNORECASE)
    writers = sorted(str(path.relative_to(ROOT)) for folder in ("servers", "orchestrator", "shared")
                     for path in (ROOT / folder).rglob("*.py") if writes.search(path.read_text()))
    assert writers == ["servers/ansible/plan_states.py"]
