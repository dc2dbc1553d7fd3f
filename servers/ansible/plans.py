"""Plans: a check-mode preview stored for a human to approve, then run once.

Life of a plan (``plans.status``)::

    pending_approval ──approve──▶ approved ──execute──▶ running ──▶ succeeded | failed
            └────────reject────▶ rejected   │  ▲
                                  pause ▼  │ resume   (a target host is busy or offline: dispatch waits)
                                         paused

Every transition is a PostgreSQL update guarded by the expected current status,
so two executors cannot both run a plan, and every decision or result is an
audit commit. Approval is recorded only through :func:`decide`, which the MCP
approval flows and ``chiffon approve`` call; nothing approves implicitly.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from chiffon.servers.ansible import generated as generated_playbooks
from chiffon.servers.ansible import preview, snapshot, variables
from chiffon.servers.ansible import secret_vars as secret_vars_store
from chiffon.servers.ansible.catalog import Catalog, Unit, parse_playbook
from chiffon.servers.ansible.generated import Generated
from chiffon.servers.ansible.matching import Match
from chiffon.servers.ansible.risk import assess
from chiffon.servers.ansible.runner import EventCallback, Outcome, TaskEvent, run_playbook
from chiffon.shared import totp
from chiffon.shared.errors import InvalidInput, PlanNotFound, PlanStateError
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

PlanStatus = Literal["pending_approval", "approved", "paused", "rejected", "running", "succeeded", "failed",
                     "expired"]


class Plan(BaseModel):
    """A stored plan: what would run where, the check-mode diff and its risk."""

    id: str = Field(description="Plan id, e.g. plan-3f9a2c1d7b.")
    request: str | None = Field(description="The plain-language request, when there was one.")
    repo: str = Field(description="Absolute path of the IaC repo.")
    repo_commit: str | None = Field(description="Git commit of the IaC repo when planned.")
    playbook: str = Field(description="Playbook path relative to the repo.")
    service: str | None = Field(description="Service the playbook manages.")
    inventory: str = Field(description="Inventory relative to the repo.")
    tags: list[str] = Field(default_factory=list, description="--tags: the role or task file the plan runs; "
                                                               "empty: the whole playbook.")
    skip_tags: list[str] = Field(default_factory=list, description="--skip-tags.")
    hosts: list[str] = Field(description="Hosts the check-mode run touched.")
    host_limit: str | None = Field(description="--limit pattern, if any.")
    extra_vars: dict[str, Any] = Field(description="Extra vars (passed as unsafe, never templated).")
    match: dict[str, Any] | None = Field(description="How the request matched: score, reason, alternatives.")
    check_result: dict[str, Any] | None = Field(description="Check-mode status, rc, per-task results, recap.")
    diff: str = Field(description="Unified diff predicted by check mode.")
    risk: str = Field(description="low, medium or high.")
    risk_reasons: list[str] = Field(description="Why the risk is what it is.")
    status: PlanStatus = Field(description="pending_approval, approved, paused, rejected, running, succeeded, "
                                           "failed or expired (the approval outlived approvals.ttl).")
    paused_reason: str | None = Field(None, description="While paused: which target hosts are busy or offline.")
    warnings: list[str] = Field(default_factory=list, description="What a reviewer should know before approving.")
    blocked_reason: str | None = Field(None, description="Why this plan cannot be approved as-is (no host matched, "
                                                         "every task skipped, a module missing); None if it can.")
    snapshot_digest: str | None = Field(None, description="SHA-256 of the repo snapshot the check ran and the run "
                                                          "runs (servers.ansible.snapshot).")
    generated_playbook: str | None = Field(None, description="The full text of a playbook chiffon generated (a "
                                                             "role no playbook applies); it runs from the plan and "
                                                             "is never written to the repo.")
    audit_commit: str | None = Field(description="Audit commit recording the plan.")
    created_at: datetime
    updated_at: datetime


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


def new_id(prefix: str) -> str:
    """``<prefix>-`` followed by 10 random hex digits."""
    return f"{prefix}-{secrets.token_hex(5)}"


def _check_summary(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status, "rc": outcome.rc, "changed": outcome.changed, "stats": outcome.stats,
        "events": [e.as_dict() for e in outcome.events], "artifact_data": outcome.artifact_data,
        "failures": outcome.failures,
    }


async def create_plan(
    rt: Runtime,
    catalog: Catalog,
    playbook_name: str,
    *,
    request: str | None = None,
    match: Match | None = None,
    alternatives: list[Match] | None = None,
    planner: dict[str, Any] | None = None,
    limit: str | None = None,
    tags: list[str] | None = None,
    skip_tags: list[str] | None = None,
    extra_vars: dict[str, Any] | None = None,
    generated: Generated | None = None,
    unit: Unit | None = None,
    secret_vars: list[str] | None = None,
    on_event: EventCallback | None = None,
) -> Plan:
    """Check-mode run of a playbook (``--tags`` selecting one role or task file), stored as a plan awaiting
    approval, with an audit commit.

    ``generated``: a playbook chiffon wrote for a role no playbook applies
    (:func:`servers.ansible.generated.for_role`); it is checked and later run from the plan's text,
    and ``playbook_name`` is ignored. ``secret_vars``: extra var names to treat as secrets besides those
    whose names say so (:mod:`servers.ansible.secret_vars`). ``unit``: the unit the planner chose (its warnings and conditions
    explain the check); by default the one ``tags`` select.

    ``planner`` (how the unit was chosen: retrieval or the LLM, its explanation) is kept in
    ``plan.match["planner"]``. The plan's ``warnings`` and ``blocked_reason`` come from
    :func:`servers.ansible.preview.check_findings`; a blocked plan is stored but cannot be approved.

    Raises:
        PlaybookNotFound, PathOutsideRepo, InvalidInput: bad playbook, tags, limit or extra_vars, or a
            ``vars_prompt`` with no value.
        RepoError: no usable inventory; vault-encrypted vars and no password file; ansible.cfg asks for a
            password.
        AnsibleError: ansible-runner could not start.
    """
    plan_id = new_id("plan")
    check_dir = rt.settings.runs_dir / f"{plan_id}-check"
    roles_path = None
    if generated is not None:
        staging = check_dir / "generated"
        playbook = parse_playbook(staging, staging / generated.name, generated.content)
        assert playbook is not None, "a generated playbook always parses"
        unit = Unit(id=f"generated:{generated.name}", kind="role", service=generated.role.short, playbook=playbook,
                    tags=tuple(playbook.tags) or (generated.role.short,), role=generated.role,
                    role_name=generated.role.name, when=generated.role.conditions,
                    warnings=(f"generated playbook {generated.name}: applies role {generated.role.name}, which no "
                              "playbook of the repo applies; it runs from this plan and is not written to the repo",))
        tags = []
        skip_tags = preview.validate_tags(catalog, playbook, skip_tags, "skip_tags")
    else:
        playbook = catalog.get(playbook_name)
        tags = preview.validate_tags(catalog, playbook, tags, "tags")
        skip_tags = preview.validate_tags(catalog, playbook, skip_tags, "skip_tags")
        if unit is None or unit.playbook is not playbook or unit.tags != tuple(tags):
            unit = catalog.unit_for(playbook.name, tags)
        run_path = playbook.name
    inventory = catalog.inventory
    limit = catalog.validate_limit(limit)
    extra_vars = variables.validate_extra_vars(catalog, playbook, extra_vars, rt.settings.ansible.allowed_extra_vars)
    shown_vars, secret = secret_vars_store.split(extra_vars, secret_vars or [])
    preview.preflight(catalog, playbook, extra_vars)
    vault = preview.vault_password(catalog, rt.settings.ansible.vault_password_file)
    # only input that passed every check reaches the snapshot store and ansible-runner
    snap = await asyncio.to_thread(snapshot.take, catalog.root, rt.settings.snapshots_dir)
    inventory_path = snap.tree / inventory
    if generated is not None:
        run_path = str(generated_playbooks.stage(snap.tree, check_dir / "generated", generated.name,
                                                 generated.content))
        roles_path = generated_playbooks.role_bases(catalog, snap.tree)
    outcome = await run_playbook(
        snap.tree, run_path, inventory_path, check_dir, check=True, limit=limit, tags=tags, skip_tags=skip_tags,
        extra_vars=extra_vars, vault_password_file=vault, roles_path=roles_path,
        timeout_s=rt.settings.ansible.check_timeout_s, forks=rt.settings.ansible.forks, on_event=on_event,
    )
    risk, reasons = assess(playbook, outcome)
    warnings, blocked = preview.check_findings(catalog, playbook, unit, outcome)
    match_info = None
    if match is not None:
        match_info = {**match.as_dict(), "alternatives": [m.as_dict() for m in alternatives or []]}
        if planner is not None:
            match_info["planner"] = planner
    row = await rt.store.pool.fetchrow(
        """INSERT INTO plans (id, request, repo, repo_commit, playbook, service, inventory, hosts, host_limit,
                              extra_vars, match, check_result, diff, risk, risk_reasons, status, tags, skip_tags,
                              warnings, blocked_reason, generated_playbook, snapshot_digest)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,'pending_approval',$16,$17,$18,$19,$20,$21)
           RETURNING *""",
        plan_id, request, str(catalog.root), catalog.commit, playbook.name, unit.service if unit else playbook.service,
        catalog.inventory, outcome.hosts, limit, shown_vars, match_info, _check_summary(outcome),
        outcome.diff_text, risk, reasons, tags, skip_tags, warnings, blocked,
        generated.content if generated else None, snap.digest,
    )
    await asyncio.to_thread(secret_vars_store.keep, rt.settings.secrets_dir, plan_id, secret)
    plan = Plan(**dict(row))
    selected = playbook.name + (f" --tags {','.join(tags)}" if tags else "")
    sha = await asyncio.to_thread(
        rt.audit.record, "plan", f"{plan_id} planned: {selected} on {', '.join(plan.hosts) or 'no hosts'}",
        {"plan_id": plan_id, "request": request, "playbook": playbook.name, "tags": tags, "skip_tags": skip_tags,
         "service": plan.service, "repo": str(catalog.root), "repo_commit": catalog.commit,
         "inventory": catalog.inventory, "hosts": plan.hosts, "limit": limit, "extra_vars": shown_vars,
         "risk": risk, "risk_reasons": reasons, "check_status": outcome.status,
         "predicted_changes": outcome.changed, "warnings": warnings, "blocked_reason": blocked,
         "generated_playbook": generated.content if generated else None, "snapshot": snap.digest},
    )
    await rt.store.pool.execute("UPDATE plans SET audit_commit=$2 WHERE id=$1", plan_id, sha)
    return plan.model_copy(update={"audit_commit": sha})


async def get_plan(rt: Runtime, plan_id: str) -> Plan:
    """The plan ``plan_id``. Raises PlanNotFound."""
    row = await rt.store.pool.fetchrow("SELECT * FROM plans WHERE id=$1", plan_id)
    if row is None:
        raise PlanNotFound(f"no plan {plan_id!r}; `chiffon audit` lists recent plans")
    return Plan(**dict(row))


def default_approver() -> str:
    """``user@cli`` for decisions typed in a terminal."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def decide(
    rt: Runtime, plan_id: str, decision: Literal["approved", "rejected"], *, approver: str, channel: str,
    reason: str | None = None, code: str | None = None,
) -> Plan:
    """Record a human decision on a pending plan, with an audit commit.

    Args:
        approver: who decided (a user name, or the MCP client's name for elicitation).
        channel: how: ``cli``, ``mcp-elicitation``, ``mcp-guard`` or ``mcp-tool``.

    Raises:
        PlanNotFound: no such plan.
        PlanStateError: the plan was already decided or run (its status is named), or it is blocked
            (``blocked_reason``) and the decision is an approval.
        InvalidInput: an approval without the current one-time ``code`` while ``approvals.totp_secret`` is set,
            or with a code that already approved something (each code is accepted once).
    """
    plan = await get_plan(rt, plan_id)
    step = totp.require(rt.settings.approvals.totp_secret, code) if decision == "approved" else None
    if decision == "approved" and plan.blocked_reason:
        raise PlanStateError(f"plan {plan_id} cannot be approved as-is: {plan.blocked_reason}")
    async with rt.store.pool.acquire() as conn, conn.transaction():
        updated = await conn.fetchval(
            "UPDATE plans SET status=$2, updated_at=now() WHERE id=$1 AND status='pending_approval' "
            "AND ($2 = 'rejected' OR blocked_reason IS NULL) RETURNING id",
            plan_id, decision,
        )
        if updated is None:
            raise PlanStateError(f"plan {plan_id} is {plan.status}; only a pending plan can be approved or rejected")
        used = "INSERT INTO totp_used (time_step) VALUES ($1) ON CONFLICT DO NOTHING RETURNING time_step"
        if step is not None and await conn.fetchval(used, step) is None:
            raise InvalidInput("code", "this one-time code was already used; wait for the next one (nothing was "
                                       "approved)")
        approval_id = await conn.fetchval(
            "INSERT INTO approvals (plan_id, decision, approver, channel, reason, snapshot_digest) "
            "VALUES ($1,$2,$3,$4,$5,$6) RETURNING id",
            plan_id, decision, approver, channel, reason, plan.snapshot_digest,
        )
    if decision == "rejected":
        secret_vars_store.discard(rt.settings.secrets_dir, plan_id)
    kind = "approval" if decision == "approved" else "rejection"
    sha = await asyncio.to_thread(
        rt.audit.record, kind, f"{plan_id} {decision} by {approver} via {channel}",
        {"plan_id": plan_id, "decision": decision, "approver": approver, "channel": channel, "reason": reason,
         "playbook": plan.playbook, "tags": plan.tags, "service": plan.service, "hosts": plan.hosts,
         "risk": plan.risk, "snapshot": plan.snapshot_digest},
    )
    await rt.store.pool.execute("UPDATE approvals SET audit_commit=$2 WHERE id=$1", approval_id, sha)
    return plan.model_copy(update={"status": decision})


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


async def pause(rt: Runtime, plan_id: str, reason: str) -> bool:
    """Approved → paused (or a paused plan's reason updated); False when the plan is in neither status."""
    paused = await rt.store.pool.fetchval(
        "UPDATE plans SET status='paused', paused_reason=$2, updated_at=now() "
        "WHERE id=$1 AND status IN ('approved','paused') RETURNING id", plan_id, reason)
    return paused is not None


async def resume(rt: Runtime, plan_id: str) -> bool:
    """Paused → approved; False when the plan was not paused."""
    return await rt.store.pool.fetchval(
        "UPDATE plans SET status='approved', paused_reason=NULL, updated_at=now() "
        "WHERE id=$1 AND status='paused' RETURNING id", plan_id) is not None


async def decision_and_run(rt: Runtime, plan_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The plan's approval decision (decision, approver, channel, reason, decided_at, audit_commit) and its run
    (id, status, rc, changed, failure, artifact_data, audit_commit, started_at, finished_at), JSON-ready; None
    for either that does not exist."""
    decision = await rt.store.pool.fetchrow(
        "SELECT decision, approver, channel, reason, decided_at, audit_commit FROM approvals WHERE plan_id=$1", plan_id)
    run = await rt.store.pool.fetchrow(
        "SELECT id, status, rc, changed, failure, artifact_data, audit_commit, started_at, finished_at "
        "FROM runs WHERE plan_id=$1", plan_id)

    def jsonable(row: Any) -> dict[str, Any] | None:
        return None if row is None else {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                                         for k, v in dict(row).items()}

    return jsonable(decision), jsonable(run)


async def paused_ids(rt: Runtime) -> list[str]:
    """Ids of the paused plans, oldest first."""
    return [r["id"] for r in await rt.store.pool.fetch(
        "SELECT id FROM plans WHERE status='paused' ORDER BY updated_at")]


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
