"""Running an approved plan: the run itself, its stored result and its events.

:func:`execute` moves a plan from ``approved`` to ``running`` with a guarded update (two executors
cannot both run it), runs the playbook from the plan's verified snapshot with its secret extra vars,
stores the run and its events, and commits the audit record. Only the infra queue handler
(:func:`chiffon.servers.ansible.dispatch.run_approved`) calls it.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from chiffon.servers.ansible import generated as generated_playbooks
from chiffon.servers.ansible import preview, snapshot
from chiffon.servers.ansible import secret_vars as secret_vars_store
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.plans import Plan, get_plan, new_id
from chiffon.servers.ansible.runner import EventCallback, Outcome, TaskEvent, run_playbook
from chiffon.shared import metrics
from chiffon.shared.error_bus import report_error
from chiffon.shared.errors import InvalidInput, PlanNotFound, PlanStateError
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)


class RunResult(BaseModel):
    """The result of executing a plan."""

    run_id: str
    plan_id: str
    status: Literal["succeeded", "failed"]
    rc: int | None
    playbook: str
    hosts: list[str]
    changed: int = Field(description="Task results that changed something.")
    monitors: list[str] | None = Field(None, description="Monitors the playbook reported (set_stats), if any.")
    artifact_data: dict[str, Any] = Field(default_factory=dict, description="All set_stats data.")
    failure: dict[str, Any] | None = Field(None, description="First failed task: task, host, module, message, rc.")
    warnings: list[str] = Field(default_factory=list, description="What the run reported as not done "
                                                                  "(container_started: false...).")
    audit_commit: str | None
    duration_s: float


async def existing_run(rt: Runtime, plan_id: str) -> RunResult | None:
    """The finished run of ``plan_id``, if there is one (for idempotent redelivery)."""
    row = await rt.store.pool.fetchrow(
        "SELECT r.*, p.playbook, p.hosts FROM runs r JOIN plans p ON p.id = r.plan_id "
        "WHERE r.plan_id=$1 AND r.status IN ('succeeded','failed')", plan_id,
    )
    if row is None:
        return None
    data = row["artifact_data"] or {}
    return RunResult(
        run_id=row["id"], plan_id=plan_id, status=row["status"], rc=row["rc"], playbook=row["playbook"],
        hosts=row["hosts"], changed=row["changed"], monitors=data.get("monitors"), artifact_data=data,
        failure=row["failure"], warnings=row["warnings"] or [], audit_commit=row["audit_commit"],
        duration_s=round((row["finished_at"] - row["started_at"]).total_seconds(), 3),
    )


def not_runnable(plan: Plan) -> PlanStateError:
    """The error for running ``plan`` in its current (non-approved) status."""
    hint = {
        "pending_approval": "it has not been approved; a human reviews and approves it in their own terminal",
        "rejected": "it was rejected; plan again to try something else",
        "running": "it is running now",
        "paused": f"it waits for its hosts ({plan.paused_reason}); it runs by itself when they are free",
    }.get(plan.status, "it already ran; plan again to run it again")
    return PlanStateError(f"plan {plan.id} is {plan.status}: {hint}")


async def _runnable_snapshot(rt: Runtime, plan: Plan) -> snapshot.Snapshot:
    """The approved plan's snapshot, verified; refuses an approval older than ``approvals.ttl``.

    Raises:
        PlanStateError: the approval expired (the plan becomes ``expired``, with an audit record), the plan has
            no snapshot, or its snapshot is gone or was changed.
    """
    decided_at = await rt.store.pool.fetchval(
        "SELECT decided_at FROM approvals WHERE plan_id=$1 AND decision='approved'", plan.id)
    ttl = rt.settings.approvals.ttl
    if decided_at is not None and datetime.now(UTC) - decided_at > ttl:
        expired = await rt.store.pool.fetchval(
            "UPDATE plans SET status='expired', updated_at=now() WHERE id=$1 AND status IN ('approved','paused') "
            "RETURNING id", plan.id)
        secret_vars_store.discard(rt.settings.secrets_dir, plan.id)
        if expired:
            await asyncio.to_thread(
                rt.audit.record, "expiry", f"{plan.id} approval expired after {ttl}",
                {"plan_id": plan.id, "playbook": plan.playbook, "service": plan.service,
                 "approved_at": decided_at.isoformat(), "ttl_s": ttl.total_seconds()})
        raise PlanStateError(f"the approval of plan {plan.id} expired ({decided_at:%Y-%m-%d %H:%M} UTC, older than "
                             f"approvals.ttl {ttl}); nothing ran. Plan again for a fresh check and approval.")
    if plan.snapshot_digest is None:
        raise PlanStateError(f"plan {plan.id} predates repo snapshots; plan again so what runs is what is approved")
    return await asyncio.to_thread(snapshot.verified, rt.settings.snapshots_dir, plan.snapshot_digest)


async def execute(rt: Runtime, catalog: Catalog, plan_id: str, *, on_event: EventCallback | None = None) -> RunResult:
    """Run an approved plan for real from its verified snapshot (never the live checkout), storing each task
    event and the result.

    Raises:
        PlanNotFound: no such plan.
        PlanStateError: the plan is pending, rejected, running or already run (named in the message); its
            approval expired; its snapshot is missing or was changed.
    """
    plan = await get_plan(rt, plan_id)
    snap = await _runnable_snapshot(rt, plan) if plan.status == "approved" else None
    run_id = new_id("run")
    async with rt.store.pool.acquire() as conn, conn.transaction():
        claimed = await conn.fetchval(
            "UPDATE plans SET status='running', updated_at=now() WHERE id=$1 AND status='approved' RETURNING id",
            plan_id,
        )
        if claimed is None:
            raise not_runnable(plan)
        await conn.execute("INSERT INTO runs (id, plan_id, status) VALUES ($1,$2,'running')", run_id, plan_id)
    started = asyncio.get_running_loop().time()

    async def record(event: TaskEvent) -> None:
        await rt.store.pool.execute(
            "INSERT INTO run_events (run_id, seq, event, host, task, module, changed, message) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,$8)",
            run_id, event.seq, event.status, event.host, event.task, event.module, event.changed, event.message,
        )
        if on_event is not None:
            await on_event(event)

    try:
        assert snap is not None  # claimed above, so the plan was approved and its snapshot verified
        run_path, roles_path = plan.playbook, None
        if plan.generated_playbook is not None:  # exactly the text the human approved, never the repo's
            run_path = str(generated_playbooks.stage(snap.tree, rt.settings.runs_dir / run_id / "generated",
                                                     Path(plan.playbook).name, plan.generated_playbook))
            roles_path = generated_playbooks.role_bases(catalog, snap.tree)
        outcome = await run_playbook(
            snap.tree, run_path, snap.tree / plan.inventory, rt.settings.runs_dir / run_id,
            check=False, limit=plan.host_limit, tags=plan.tags, skip_tags=plan.skip_tags,
            extra_vars={**plan.extra_vars, **secret_vars_store.load(rt.settings.secrets_dir, plan_id)},
            roles_path=roles_path,
            vault_password_file=preview.vault_password(catalog, rt.settings.ansible.vault_password_file),
            timeout_s=rt.settings.ansible.run_timeout_s, forks=rt.settings.ansible.forks, on_event=record,
        )
    except Exception as exc:
        outcome = Outcome(status="failed", rc=None, failures=[
            {"task": None, "host": None, "module": None, "message": str(exc), "rc": None}])
    secret_vars_store.discard(rt.settings.secrets_dir, plan_id)  # the plan ran once; it never runs again
    status = "succeeded" if outcome.status == "successful" else "failed"
    failure = outcome.failures[0] if outcome.failures else None
    warnings = preview.run_warnings(outcome.artifact_data) if status == "succeeded" else []
    duration = round(asyncio.get_running_loop().time() - started, 3)
    sha = await asyncio.to_thread(
        rt.audit.record, "run", f"{plan_id} {status}: {plan.playbook} ({outcome.changed} changed)",
        {"plan_id": plan_id, "run_id": run_id, "status": status, "rc": outcome.rc, "playbook": plan.playbook,
         "service": plan.service, "hosts": outcome.hosts or plan.hosts, "changed": outcome.changed,
         "tags": plan.tags, "stats": outcome.stats, "artifact_data": outcome.artifact_data,
         "failures": outcome.failures, "warnings": warnings, "duration_s": duration},
    )
    async with rt.store.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE runs SET status=$2, rc=$3, stats=$4, artifact_data=$5, changed=$6, failure=$7, "
            "audit_commit=$8, warnings=$9, finished_at=now() WHERE id=$1",
            run_id, status, outcome.rc, outcome.stats, outcome.artifact_data, outcome.changed, failure, sha, warnings,
        )
        await conn.execute("UPDATE plans SET status=$2, updated_at=now() WHERE id=$1", plan_id, status)
    metrics.RUNS.labels(status).inc()
    metrics.RUN_SECONDS.observe(duration)
    if failure is not None:
        for failed in outcome.failures or [failure]:
            report_error("ansible", "run_failed", f"{plan.playbook}: {failed.get('task') or 'the run'} failed: "
                         f"{failed.get('message') or 'no message'}", "error",
                         {"plan": plan_id, "host": failed.get("host")})
    monitors = outcome.artifact_data.get("monitors")
    return RunResult(
        run_id=run_id, plan_id=plan_id, status=status, rc=outcome.rc, playbook=plan.playbook,
        hosts=outcome.hosts or plan.hosts, changed=outcome.changed,
        monitors=list(monitors) if isinstance(monitors, list) else None, artifact_data=outcome.artifact_data,
        failure=failure, warnings=warnings, audit_commit=sha, duration_s=duration,
    )


async def run_events(rt: Runtime, run_id: str, *, after_seq: int = 0, limit: int = 500) -> list[dict[str, Any]]:
    """Stored task events of ``run_id`` after ``after_seq``, in order.

    Raises:
        InvalidInput: limit outside 1..5000.
        PlanNotFound: no run with that id.
    """
    if limit <= 0 or limit > 5000:
        raise InvalidInput("limit", "must be between 1 and 5000")
    if await rt.store.pool.fetchval("SELECT 1 FROM runs WHERE id=$1", run_id) is None:
        raise PlanNotFound(f"no run {run_id!r}")
    rows = await rt.store.pool.fetch(
        "SELECT seq, event AS status, host, task, module, changed, message, created_at FROM run_events "
        "WHERE run_id=$1 AND seq>$2 ORDER BY seq LIMIT $3", run_id, after_seq, limit,
    )
    return [{**dict(r), "created_at": r["created_at"].isoformat()} for r in rows]
