"""Plans against real ansible-runner on localhost, PostgreSQL and the audit repo."""

from __future__ import annotations

from pathlib import Path

import pytest

from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.attempt import run_approved
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import InvalidInput, PlanNotFound, PlanStateError
from chiffon.shared.runtime import Runtime


@pytest.fixture
def svc(rt: Runtime, repo: Path) -> AnsibleService:
    return AnsibleService.for_runtime(rt, repo)


async def approved_plan(svc: AnsibleService, playbook: str, **kwargs) -> plans.Plan:  # type: ignore[no-untyped-def]
    plan = await plans.create_plan(svc.rt, await svc.catalog(), playbook, **kwargs)
    return await plans.decide(svc.rt, plan.id, "approved", approver="tester", channel="cli")


async def test_extra_vars_are_never_templated(svc: AnsibleService, targets: Path) -> None:
    payload = "{{ lookup('pipe', 'id') }}"
    plan = await approved_plan(svc, "echo-message.yml", extra_vars={"message": payload})
    result = await execution.execute(svc.rt, await svc.catalog(), plan.id)
    assert result.status == "succeeded"
    assert (targets / "ai" / "echo.txt").read_text() == payload  # literal, not `uid=0(root)...`


async def test_check_mode_changes_nothing(svc: AnsibleService, targets: Path) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "deploy-redis.yml")
    assert plan.status == "pending_approval" and plan.hosts == ["east"]
    assert "redis.conf" in plan.diff and "allkeys-lru" in plan.diff
    assert not (targets / "east" / "redis" / "redis.conf").exists()


async def test_unapproved_plan_does_not_run(svc: AnsibleService) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml")
    with pytest.raises(PlanStateError, match="not been approved"):
        await execution.execute(svc.rt, await svc.catalog(), plan.id)
    assert await svc.rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0


async def test_rejected_plan_does_not_run_and_cannot_be_approved_later(svc: AnsibleService) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml")
    await plans.decide(svc.rt, plan.id, "rejected", approver="tester", channel="cli", reason="not today")
    with pytest.raises(PlanStateError, match="rejected"):
        await execution.execute(svc.rt, await svc.catalog(), plan.id)
    with pytest.raises(PlanStateError, match="only a pending plan"):
        await plans.decide(svc.rt, plan.id, "approved", approver="tester", channel="cli")


async def test_a_plan_runs_once(svc: AnsibleService) -> None:
    plan = await approved_plan(svc, "echo-message.yml")
    await execution.execute(svc.rt, await svc.catalog(), plan.id)
    with pytest.raises(PlanStateError, match="already ran"):
        await execution.execute(svc.rt, await svc.catalog(), plan.id)


async def test_redelivered_task_returns_the_stored_result_without_running_again(svc: AnsibleService) -> None:
    plan = await approved_plan(svc, "echo-message.yml")
    first = await run_approved(svc, plan.id)
    again = await run_approved(svc, plan.id)  # the queue redelivered the task
    assert first.result is not None and again.result is not None
    assert again.result.run_id == first.result.run_id
    assert await svc.rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 1


async def test_a_paused_plan_another_worker_resumed_is_left_to_that_worker(
        svc: AnsibleService, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = await approved_plan(svc, "echo-message.yml")
    assert await plans.pause(svc.rt, plan.id, "ai is busy: a game")

    async def lost(rt: object, plan_id: str) -> bool:  # the guarded resume went to a resumer, which queued the run
        return False

    monkeypatch.setattr(plans, "resume", lost)
    ran = await run_approved(svc, plan.id)
    assert ran.result is None and ran.paused is None
    assert await svc.rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id=$1", plan.id) == 0


async def test_failed_run_stores_a_structured_failure(svc: AnsibleService) -> None:
    plan = await approved_plan(svc, "break-things.yml")
    result = await execution.execute(svc.rt, await svc.catalog(), plan.id)
    assert result.status == "failed" and result.rc != 0
    failure = result.failure
    assert failure is not None
    assert (failure["task"], failure["host"], failure["module"]) == ("A step that fails", "east", "ansible.builtin.command")
    assert failure["rc"] == 1
    row = await svc.rt.store.pool.fetchrow("SELECT status, failure FROM runs WHERE id=$1", result.run_id)
    assert row["status"] == "failed" and row["failure"]["task"] == "A step that fails"
    (audit,) = svc.rt.audit.query(plan_id=plan.id, kind="run")
    assert audit.body["status"] == "failed" and audit.commit == result.audit_commit
    assert plan.id in [e.body["plan_id"] for e in svc.rt.audit.query(failed=True)]


async def test_unknown_plan_is_not_found(svc: AnsibleService) -> None:
    with pytest.raises(PlanNotFound, match="plan-nope"):
        await execution.execute(svc.rt, await svc.catalog(), "plan-nope")


async def test_bad_extra_var_names_are_refused_before_anything_runs(svc: AnsibleService) -> None:
    before = await svc.rt.store.pool.fetchval("SELECT count(*) FROM plans")
    with pytest.raises(InvalidInput, match="extra_vars"):
        await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml", extra_vars={"bad-name": 1})
    assert await svc.rt.store.pool.fetchval("SELECT count(*) FROM plans") == before
