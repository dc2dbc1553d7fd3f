"""A run across hosts, on one machine: a worker whose CHIFFON_HOME lacks the plan's snapshot runs the approved one
from PostgreSQL; a run whose worker on another host went silent is reconciled here (tests/lab shows both across
real hosts)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chiffon.servers.ansible import execution, plan_states, plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.runtime import Runtime
from tests.conftest import git_commit_all, make_repo
from tests.security.test_pinned_runs import approved_echo, forget_locally


@pytest.fixture
def fresh_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "iac")


async def test_a_worker_without_the_snapshot_runs_the_approved_one_from_postgresql(
        rt: Runtime, fresh_repo: Path, targets: Path) -> None:
    svc, plan = await approved_echo(rt, fresh_repo)
    assert plan.snapshot_digest is not None
    forget_locally(rt, plan.snapshot_digest)
    (fresh_repo / "echo-message.yml").write_text("- hosts: all\n  tasks: []\n")  # the live repo is not what runs
    result = await execution.execute(rt, await svc.catalog(), plan.id)
    assert result.status == "succeeded"
    assert (targets / "ai" / "echo.txt").read_text() == "approved"


async def _running_elsewhere(rt: Runtime, repo: Path, host: str, silent_s: int) -> tuple[plans.Plan, str]:
    """An approved plan whose run a worker on ``host`` started, and whose heartbeat stopped ``silent_s`` ago."""
    _, plan = await approved_echo(rt, repo)
    run_id = plans.new_id("run")
    async with rt.store.pool.acquire() as conn, conn.transaction():
        assert await plan_states.start_run(conn, plan.id)
        await conn.execute("INSERT INTO runs (id, plan_id, status, host, heartbeat_at) VALUES ($1, $2, 'running', $3, "
                           "now() - make_interval(secs => $4))", run_id, plan.id, host, silent_s)
    return plan, run_id


async def test_a_run_whose_worker_on_another_host_went_silent_is_reconciled_here(rt: Runtime, fresh_repo: Path) -> None:
    silent, silent_run = await _running_elsewhere(rt, fresh_repo, "east", int(execution.RUN_SILENT_S) + 30)
    beating, beating_run = await _running_elsewhere(rt, fresh_repo, "east", 5)
    done = await execution.reconcile(rt)
    assert silent_run in done and beating_run not in done
    assert (await plans.get_plan(rt, silent.id)).status == "failed"
    result = await execution.existing_run(rt, silent.id)
    assert result is not None and result.outcome == "failed"
    assert "on east stopped answering (no heartbeat for" in result.outcome_reasons[0]
    assert (await plans.get_plan(rt, beating.id)).status == "running"  # its worker still says it runs


async def test_a_running_run_beats(rt: Runtime, fresh_repo: Path) -> None:
    (fresh_repo / "slow.yml").write_text("# Wait a while on the host\n- hosts: ai\n  gather_facts: false\n  tasks:\n"
                                         "    - name: Wait\n      ansible.builtin.command: sleep 12\n"
                                         "    - name: Note it\n      ansible.builtin.file:\n"
                                         "        path: \"{{ homelab_root }}/waited\"\n        state: directory\n")
    git_commit_all(fresh_repo)
    svc = AnsibleService.for_runtime(rt, fresh_repo)
    plan = await plans.create_plan(rt, await svc.catalog(), "slow.yml")
    await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    running = asyncio.ensure_future(execution.execute(rt, await svc.catalog(), plan.id))
    seen = set()
    while not running.done():
        row = await rt.store.pool.fetchrow("SELECT heartbeat_at FROM runs WHERE plan_id=$1", plan.id)
        if row is not None:
            seen.add(row["heartbeat_at"])
        await asyncio.sleep(0.5)
    assert (await running).status == "succeeded"
    assert len(seen) >= 2, seen  # the row's first beat, then at least one every RUN_HEARTBEAT_S
