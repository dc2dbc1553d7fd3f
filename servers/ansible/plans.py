"""Plans: a check-mode preview stored for a human to approve, then run once.

Life of a plan (``plans.status``; the run itself is :mod:`chiffon.servers.ansible.execution`)::

    pending_approval ──approve──▶ approved ──execute──▶ running ──▶ succeeded | failed
            └────────reject────▶ rejected   │  ▲  └──ttl──▶ expired
                                  pause ▼  │ resume   (a target host is busy or offline: the attempt waits)
                                         paused ──ttl──▶ expired

The allowed transitions are data in :mod:`chiffon.servers.ansible.plan_states`, and every one goes through its
guarded :func:`~chiffon.servers.ansible.plan_states.transition`: a PostgreSQL update guarded by the expected
current status, so two executors cannot both run a plan, and every decision or result is an
audit commit. Approval is recorded only through :func:`decide`, which the MCP
approval flows and ``chiffon approve`` call; nothing approves implicitly. A plan stored and a decision each put
a plan event on ``chiffon:plan-events`` (:mod:`.plan_events`, best effort) for the notifications.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import secrets
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from chiffon.servers.ansible import checks as run_checks
from chiffon.servers.ansible import generated as generated_playbooks
from chiffon.servers.ansible import (
    outcomes,
    outside,
    plan_events,
    plan_states,
    preview,
    prompted,
    reach,
    snapshot,
    snapshot_store,
)
from chiffon.servers.ansible import secret_vars as secret_vars_store
from chiffon.servers.ansible.catalog import Catalog, Playbook, Unit, parse_playbook
from chiffon.servers.ansible.events import EventCallback, Outcome
from chiffon.servers.ansible.generated import Generated
from chiffon.servers.ansible.matching import Match
from chiffon.servers.ansible.plan_states import PlanStatus
from chiffon.servers.ansible.request import PlanRequest
from chiffon.servers.ansible.risk import assess
from chiffon.servers.ansible.runner import run_playbook
from chiffon.shared import metrics, totp
from chiffon.shared.errors import ConfigError, InvalidInput, PlanNotFound, PlanStateError
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)


class Plan(BaseModel):
    """A stored plan: what would run where, the check-mode diff and its risk."""

    id: str = Field(description="Plan id, e.g. plan-3f9a2c1d7b.")
    request: str | None = Field(description="The plain-language request, when there was one.")
    repo: str = Field(description="Absolute path of the IaC repo.")
    repo_commit: str | None = Field(description="Git commit of the IaC repo when planned.")
    playbook: str = Field(description="Playbook path relative to the repo.")
    service: str | None = Field(description="Service the playbook manages.")
    inventory: str = Field(description="Inventory relative to the repo: the one the plan runs with, or, on a "
                                       "plan blocked because it is not here, the one the owner runs with "
                                       "(empty when there is none to name).")
    project: str = Field("", description="The Ansible project's folder, relative to the repo (\"\" for the root): "
                                         "checks and runs start there, so its ansible.cfg applies.")
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
    supersedes: str | None = Field(None, description="The plan this one replaces after a reviewer asked for changes.")
    expectations: list[dict[str, Any]] = Field(
        default_factory=list, description="What the run is checked for afterwards, read-only: [{name, failing, kind, "
                                          "target, hosts, fresh, source}] (servers.ansible.checks).")
    last_outcome: dict[str, Any] | None = Field(
        None, description="The last run of the same playbook and tags: {run_id, plan_id, outcome, reasons, checks, "
                          "finished_at}; None when it never ran.")
    created_at: datetime
    updated_at: datetime


def new_id(prefix: str) -> str:
    """``<prefix>-`` followed by 10 random hex digits."""
    return f"{prefix}-{secrets.token_hex(5)}"


def _check_summary(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status, "rc": outcome.rc, "changed": outcome.changed, "stats": outcome.stats,
        "events": [e.as_dict() for e in outcome.events], "artifact_data": outcome.artifact_data,
        "failures": outcome.failures,
    }


def check_problems(rt: Runtime, catalog: Catalog, playbook: Playbook, extra_vars: dict[str, Any],
                   typed: prompted.Typed | None = None, problems: list[str] | None = None) -> tuple[list[str], Path | None]:
    """``(problems, vault)``: what stops a check of ``playbook`` on this machine, each with its fix, after
    ``problems`` (the planner's); and the vault password file the check passes (None: none is needed or it is
    missing). The problems: no usable inventory (unless ``problems`` already names one), a ``vars_prompt`` with no
    value in ``extra_vars`` or an ``ansible.cfg`` prompt nobody answers, vault-encrypted vars with no password (or
    an executable one not allowed). ``typed``: passwords a human typed for this check. Reads files; raises nothing.
    """
    problems = list(problems or [])
    if catalog.inventory_choice is None and not problems:
        problems.append(catalog.inventory_problem or f"{catalog.root} has no usable inventory")
    answered = frozenset({"ask_vault_pass"} if typed and typed.vault else set()) | \
        frozenset({"become_ask_pass"} if typed and typed.become else set())
    problems += preview.preflight_problems(catalog, playbook, extra_vars, answered)
    vault, vault_problem = preview.vault_password_or_problem(catalog, rt.settings.ansible.vault_password_file,
                                                             typed=bool(typed and typed.vault),
                                                             allow_scripts=rt.settings.ansible.allow_repo_vault_scripts)
    problems += [vault_problem] if vault_problem else []
    return problems, vault


async def run_check(rt: Runtime, catalog: Catalog, snap: snapshot.Snapshot, run_path: str, check_dir: Path, *,
                    inventory: str, vault: Path | None, project: str, limit: str | None = None,
                    tags: list[str] | None = None, skip_tags: list[str] | None = None,
                    extra_vars: dict[str, Any] | None = None, roles_path: list[Path] | None = None,
                    typed: prompted.Typed | None = None, on_event: EventCallback | None = None,
                    secret: Any = (), verify: tuple[Path, str] | None = None) -> Outcome:
    """Check mode (``--check --diff``) of ``run_path`` from the snapshot ``snap`` with the inventory (repo-relative)
    in it, the vault password file's verified copy (:func:`preview.vault_for_run`) and the settings every check
    shares: ``ansible.check_timeout_s``, ``ansible.forks``, ``ansible.pass_env``; ``secret`` values masked. Inputs
    are already validated (tags, limit, extra vars); ``verify``: the read-only checks' playbook and play name
    (:func:`servers.ansible.checks.stage`), run after it in the same call. Raises AnsibleError when ansible-runner cannot start,
    PlanStateError when the vault password file is not the snapshot's."""
    return await run_playbook(
        snap.tree, run_path, snap.tree / inventory, check_dir, check=True, limit=limit, tags=tags,
        skip_tags=skip_tags, extra_vars=extra_vars, roles_path=roles_path,
        vault_password_file=preview.vault_for_run(vault, catalog.root, snap, check_dir), project=project,
        typed=typed, timeout_s=rt.settings.ansible.check_timeout_s, forks=rt.settings.ansible.forks,
        on_event=on_event, secret_values=secret, pass_env=rt.settings.ansible.pass_env, verify=verify,
    )


async def create_plan(
    rt: Runtime,
    catalog: Catalog,
    playbook_name: str,
    req: PlanRequest | None = None,
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
    expected_inventory: str | None = None,
    problems: list[str] | None = None,
    typed: prompted.Typed | None = None,
) -> Plan:
    """Check-mode run of a playbook (``--tags`` selecting one role or task file), stored as a plan awaiting
    approval, with an audit commit.

    ``req``: what to plan, as the edge built it (:class:`~chiffon.servers.ansible.request.PlanRequest`: its
    request text, limit, tags, skip_tags, extra_vars and secret_vars; its repo and inventory are the caller's
    ``catalog`` already). ``request``, ``limit``, ``tags``, ``skip_tags``, ``extra_vars`` and ``secret_vars`` are
    the same fields given one by one, for a direct caller with no request object; not both (TypeError).

    ``generated``: a playbook chiffon wrote for a role no playbook applies
    (:func:`servers.ansible.generated.for_role`); it is checked and later run from the plan's text,
    and ``playbook_name`` is ignored. ``secret_vars``: extra var names to treat as secrets besides those
    whose names say so (:mod:`servers.ansible.secret_vars`). ``unit``: the unit the planner chose (its warnings and conditions
    explain the check); by default the one ``tags`` select.

    ``planner`` (how the unit was chosen: retrieval or the LLM, its explanation) is kept in
    ``plan.match["planner"]``. The plan's ``warnings`` and ``blocked_reason`` come from
    :func:`servers.ansible.preview.check_findings`; a blocked plan is stored but cannot be approved.

    Answer first, block second: what is missing on this machine never hides the answer. No usable
    inventory (``problems`` from the planner, or the catalog's own), vault-encrypted vars and no password,
    a ``vars_prompt`` with no value or ``ansible.cfg`` asking for a password: the plan is stored with its
    playbook, tags, limit and inventory (``expected_inventory`` when it is absent), no check is run, and
    ``blocked_reason`` gives each fix. ``typed``: passwords a human typed at a terminal for this plan
    (:mod:`servers.ansible.prompted`); held in this process for the run, never stored.

    Raises:
        PlaybookNotFound, PathOutsideRepo, InvalidInput: bad playbook, tags, limit or extra_vars.
        AnsibleError: ansible-runner could not start.
    """
    fields = {"request": request, "limit": limit, "tags": tags, "skip_tags": skip_tags, "extra_vars": extra_vars,
              "secret_vars": secret_vars}
    if req is not None and any(v is not None for v in fields.values()):
        raise TypeError("create_plan: give a PlanRequest or its fields one by one, not both")
    req = req or PlanRequest(**fields)
    plan_id = new_id("plan")
    check_dir = rt.settings.runs_dir / f"{plan_id}-check"
    roles_path = None
    if generated is not None:
        staging = check_dir / "generated"
        playbook = parse_playbook(staging, staging / generated.name, generated.content)
        assert playbook is not None, "a generated playbook always parses"
        unit = generated.unit(playbook)  # the role it applies, or (an undo) the whole playbook
    else:
        playbook = catalog.get(playbook_name)
        run_path = playbook.name
    # only input that passed every check goes on (tags, skip_tags, limit, extra_vars: PlanRequest.checked)
    req = req.checked(catalog, playbook, allowed_extra_vars=rt.settings.ansible.allowed_extra_vars,
                      generated=generated is not None)
    request, limit, extra_vars = req.request, req.limit, req.extra_vars or {}
    tags, skip_tags = req.tags or [], req.skip_tags or []
    if generated is None and (unit is None or unit.playbook is not playbook or unit.tags != tuple(tags)):
        unit = catalog.unit_for(playbook.name, tags)
    inventory = catalog.inventory if catalog.inventory_choice is not None else (expected_inventory or "")
    shown_vars, secret = secret_vars_store.split(extra_vars, req.secret_vars or [])
    problems, vault = check_problems(rt, catalog, playbook, extra_vars, typed, problems)
    # only input that passed every check reaches the snapshot store and ansible-runner
    pinned, scope_notes = await asyncio.to_thread(outside.scope, catalog, playbook, unit, vault)  # issue 28
    snap = await asyncio.to_thread(snapshot.take, catalog.root, rt.settings.snapshots_dir, pinned)
    await snapshot_store.publish(rt.store.pool, rt.settings.snapshots_dir, snap.digest)  # for a worker elsewhere
    if generated is not None:
        run_path = str(generated_playbooks.stage(snap.tree, check_dir / "generated", generated.name,
                                                 generated.content))
        roles_path = generated_playbooks.role_bases(catalog, snap.tree)
    try:
        expected = run_checks.expectations(catalog, unit, playbook.name, tags)
    except ConfigError as exc:  # the repo's chiffon.yml: said, never a reason to hide the answer
        expected, scope_notes = [], [*scope_notes, f"{exc}; nothing will verify this run"]
    last = await outcomes.last_run(rt, str(catalog.root), playbook.name, tags)
    blocked: str | None
    now: list[run_checks.Result] = []  # the checks as they stand before the run (made during the check)
    if problems:  # nothing can be checked here: the answer is stored, blocked, with each fix
        outcome = Outcome(status="not_run", rc=None)
        risk, reasons = assess(playbook, outcome)
        warnings = [*(unit.warnings if unit else ()), *preview.check_mode_notes(catalog, playbook, unit)]
        blocked = "; ".join(dict.fromkeys(problems)) + (
            ". The answer above is what would run; fix this and plan again (check mode runs then)")
    else:
        # the same checks the run makes, now: is it in place already?
        verify = run_checks.stage(check_dir / "verify", (snap.tree / run_path).parent, expected)
        warming = asyncio.ensure_future(asyncio.to_thread(rt.audit.warm))  # GitPython loads while Ansible checks
        outcome = await run_check(rt, catalog, snap, run_path, check_dir, inventory=inventory, vault=vault,
                                  project=catalog.project if generated is None else "", limit=limit, tags=tags,
                                  skip_tags=skip_tags, extra_vars=extra_vars, roles_path=roles_path, typed=typed,
                                  on_event=on_event, secret=secret, verify=verify)
        await warming
        risk, reasons = assess(playbook, outcome)
        warnings, blocked = preview.check_findings(catalog, playbook, unit, outcome)
        dark = reach.unreachable(outcome)
        if untrusted := {h: m for h, m in dark.items() if reach.host_key_failed(m)}:  # the fingerprint, to trust
            cwd = snap.tree / catalog.project if generated is None else snap.tree
            advice = await asyncio.gather(*(asyncio.to_thread(reach.host_key_advice, snap.tree / inventory, host,
                                                              message, cwd) for host, message in untrusted.items()))
            blocked = reach.blocked_reason(dark, dict(zip(untrusted, advice, strict=True)))
        now = await run_checks.results(expected, outcome.probes, since=0.0) if expected else []
    await asyncio.to_thread(catalog.wait_inventory)  # read beside the check (checks._within): its error is the plan's
    before = outcomes.before_run_warnings(unit.name if unit else playbook.name, last, now)
    warnings = list(dict.fromkeys([*before, *warnings, *scope_notes]))
    match_info = None
    if match is not None:
        match_info = {**match.as_dict(), "alternatives": [m.as_dict() for m in alternatives or []]}
        if planner is not None:
            match_info["planner"] = planner
    row = await rt.store.pool.fetchrow(
        """INSERT INTO plans (id, request, repo, repo_commit, playbook, service, inventory, hosts, host_limit,
                              extra_vars, match, check_result, diff, risk, risk_reasons, status, tags, skip_tags,
                              warnings, blocked_reason, generated_playbook, snapshot_digest, project, expectations,
                              last_outcome)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,'pending_approval',$16,$17,$18,$19,$20,$21,$22,
                   $23,$24)
           RETURNING *""",
        plan_id, request, str(catalog.root), catalog.commit, playbook.name, unit.service if unit else playbook.service,
        inventory, outcome.hosts, limit, shown_vars, match_info, _check_summary(outcome),
        outcome.diff_text, risk, reasons, tags, skip_tags, warnings, blocked,
        generated.content if generated else None, snap.digest, catalog.project if generated is None else "",
        [c.as_dict() for c in expected], last,
    )
    await asyncio.to_thread(secret_vars_store.keep, rt.settings.secrets_dir, plan_id, secret)
    if typed is not None and not blocked:
        prompted.hold(plan_id, typed)  # in this process only, for the run after approval
    plan = Plan(**dict(row))
    selected = playbook.name + (f" --tags {','.join(tags)}" if tags else "")
    sha = await asyncio.to_thread(
        rt.audit.record, "plan", f"{plan_id} planned: {selected} on {', '.join(plan.hosts) or 'no hosts'}",
        {"plan_id": plan_id, "request": request, "playbook": playbook.name, "tags": tags, "skip_tags": skip_tags,
         "service": plan.service, "repo": str(catalog.root), "repo_commit": catalog.commit,
         "project": plan.project, "inventory": inventory, "hosts": plan.hosts, "limit": limit, "extra_vars": shown_vars,
         "risk": risk, "risk_reasons": reasons, "check_status": outcome.status,
         "predicted_changes": outcome.changed, "warnings": warnings, "blocked_reason": blocked,
         "generated_playbook": generated.content if generated else None, "snapshot": snap.digest,
         "checks_after_run": [c.describe() for c in expected]},
    )
    await rt.store.pool.execute("UPDATE plans SET audit_commit=$2 WHERE id=$1", plan_id, sha)
    await plan_events.publish(rt, "pending_approval", plan_id, playbook=playbook.name, risk=risk, blocked=bool(blocked))
    return plan.model_copy(update={"audit_commit": sha})


async def get_plan(rt: Runtime, plan_id: str) -> Plan:
    """The plan ``plan_id``. Raises PlanNotFound."""
    row = await rt.store.pool.fetchrow("SELECT * FROM plans WHERE id=$1", plan_id)
    if row is None:
        raise PlanNotFound(f"no plan {plan_id!r}; `chiffon audit` lists recent plans")
    return Plan(**dict(row))


async def listing(rt: Runtime, statuses: Sequence[str] | None = None, *, limit: int = 50) -> list[Plan]:
    """The newest ``limit`` plans (1..500), only those in ``statuses`` when given, newest first."""
    limit = max(1, min(500, limit))
    rows = await rt.store.pool.fetch(
        "SELECT * FROM plans WHERE ($1::text[] IS NULL OR status = ANY($1::text[])) ORDER BY created_at DESC LIMIT $2",
        list(statuses) if statuses is not None else None, limit)
    return [Plan(**dict(row)) for row in rows]


async def link_replacement(rt: Runtime, new_id: str, old_id: str) -> None:
    """Record that plan ``new_id`` replaces ``old_id`` (its reviewer asked for changes)."""
    await rt.store.pool.execute("UPDATE plans SET supersedes=$2 WHERE id=$1", new_id, old_id)


def default_approver() -> str:
    """The account name running this process (``getpass.getuser()``, ``"unknown"`` when none), the approver a
    terminal decision records. It names an account, not a person: anything running as that account (the IDE's
    model with a shell among them) can type at a terminal, so the channel says so (``terminal (uid N, not proof
    of a human)``) and only a one-time code (`` + totp``) proves a human."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def decide(
    rt: Runtime, plan_id: str, decision: Literal["approved", "rejected"], *, approver: str, channel: str,
    reason: str | None = None, code: str | None = None,
) -> Plan:
    """Record a decision on a pending plan, with an audit commit (``approvals`` row and git record alike).

    The record says what the channel is, never more: a client's word is ``client-asserted "NAME"``, a terminal
    is the account and ``terminal (uid N, not proof of a human)``. When a valid one-time code came with an
    approval, `` + totp`` is appended to ``approver``: the code, not the channel, is what proves a human.

    Args:
        approver: who decided as the channel knows it: an account name (terminal), ``client-asserted "NAME"``
            (MCP elicitation, guard or tool, plus the token and address over HTTP), ``NAME (console)``.
        channel: how: ``terminal (uid N, not proof of a human)``, ``mcp-elicitation``, ``mcp-guard``,
            ``mcp-tool`` or ``console``.
        code: the current 6-digit one-time code, when TOTP is set up.

    Raises:
        PlanNotFound: no such plan.
        PlanStateError: the plan was already decided or run (its status is named), or it is blocked
            (``blocked_reason``) and the decision is an approval.
        ConfigError: an approval while ``approvals.require_totp`` is on and no ``approvals.totp_secret`` is set
            (nothing can be approved until ``chiffon totp setup``; nothing is recorded).
        InvalidInput: an approval without the current one-time ``code`` while ``approvals.totp_secret`` is set,
            or with a code that already approved something (each code is accepted once).
    """
    plan = await get_plan(rt, plan_id)
    approvals = rt.settings.approvals
    if decision == "approved" and approvals.require_totp and approvals.totp_secret is None:
        raise ConfigError("approvals.require_totp is on but no approvals.totp_secret is set, so nothing can be "
                          "approved; nothing was. Run `chiffon totp setup` and put the secret in "
                          "CHIFFON_APPROVALS__TOTP_SECRET where the orchestrator runs (its 0600 env file)")
    step = totp.require(approvals.totp_secret, code) if decision == "approved" else None
    if step is not None:
        approver = f"{approver} + totp"
    if decision == "approved" and plan.blocked_reason:
        raise PlanStateError(f"plan {plan_id} cannot be approved as-is: {plan.blocked_reason}")
    async with rt.store.pool.acquire() as conn, conn.transaction():
        moved = await plan_states.transition(conn, plan_id, decision, from_="pending_approval",
                                             unblocked=decision == "approved")
        if not moved:
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
        prompted.forget(plan_id)
    kind = "approval" if decision == "approved" else "rejection"
    sha = await asyncio.to_thread(
        rt.audit.record, kind, f"{plan_id} {decision} by {approver} via {channel}",
        {"plan_id": plan_id, "decision": decision, "approver": approver, "channel": channel, "reason": reason,
         "playbook": plan.playbook, "tags": plan.tags, "service": plan.service, "hosts": plan.hosts,
         "risk": plan.risk, "snapshot": plan.snapshot_digest},
    )
    await rt.store.pool.execute("UPDATE approvals SET audit_commit=$2 WHERE id=$1", approval_id, sha)
    metrics.APPROVALS.labels(decision, channel).inc()
    await plan_events.publish(rt, "decided", plan_id, decision=decision, approver=approver, channel=channel,
                              risk=plan.risk, playbook=plan.playbook)
    return plan.model_copy(update={"status": decision})


async def pause(rt: Runtime, plan_id: str, reason: str) -> bool:
    """Approved → paused (or a paused plan's reason updated); False when the plan is in neither status."""
    return await plan_states.transition(rt.store.pool, plan_id, "paused", from_=("approved", "paused"),
                                        paused_reason=reason)


async def resume(rt: Runtime, plan_id: str) -> bool:
    """Paused → approved; False when the plan was not paused."""
    return await plan_states.transition(rt.store.pool, plan_id, "approved", from_="paused", paused_reason=None)


async def decision_and_run(rt: Runtime, plan_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The plan's approval decision (decision, approver, channel, reason, decided_at, audit_commit) and its run
    (id, outcome, outcome_reasons, checks, skipped, status, rc, changed, failure, artifact_data, audit_commit,
    started_at, finished_at), JSON-ready; None
    for either that does not exist."""
    decision = await rt.store.pool.fetchrow(
        "SELECT decision, approver, channel, reason, decided_at, audit_commit FROM approvals WHERE plan_id=$1", plan_id)
    run = await rt.store.pool.fetchrow(
        "SELECT id, outcome, outcome_reasons, checks, skipped, status, rc, changed, failure, artifact_data, "
        "audit_commit, started_at, finished_at FROM runs WHERE plan_id=$1", plan_id)

    def jsonable(row: Any) -> dict[str, Any] | None:
        return None if row is None else {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                                         for k, v in dict(row).items()}

    return jsonable(decision), jsonable(run)


async def paused_ids(rt: Runtime) -> list[str]:
    """Ids of the paused plans, oldest first."""
    return [r["id"] for r in await rt.store.pool.fetch(
        "SELECT id FROM plans WHERE status='paused' ORDER BY updated_at")]
