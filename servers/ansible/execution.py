"""Running an approved plan: the run itself, its stored result and its events.

:func:`execute` moves a plan from ``approved`` to ``running`` through the plan's state machine
(:mod:`.plan_states`, a guarded update: two executors cannot both run it), runs the playbook from the
plan's verified snapshot with its secret extra vars, stores the run and its events, and commits the audit
record; every status change (running, then succeeded or failed, or expired) is asked of :mod:`.plan_states`.
Only the infra queue handler (:func:`chiffon.servers.ansible.attempt.run_approved`) calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from chiffon.servers.ansible import checks as run_checks
from chiffon.servers.ansible import generated as generated_playbooks
from chiffon.servers.ansible import (
    outcomes,
    plan_events,
    plan_states,
    preview,
    prompted,
    snapshot,
    snapshot_store,
    undo,
)
from chiffon.servers.ansible import secret_vars as secret_vars_store
from chiffon.servers.ansible.catalog import Catalog
from chiffon.servers.ansible.events import EventCallback, Outcome, TaskEvent
from chiffon.servers.ansible.plans import Plan, get_plan, new_id
from chiffon.servers.ansible.runner import run_playbook
from chiffon.shared import metrics
from chiffon.shared.error_bus import report_error
from chiffon.shared.errors import InvalidInput, PlanNotFound, PlanStateError, StoreUnavailable
from chiffon.shared.logs import log_context
from chiffon.shared.redact import redact_text, remember
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)


class RunResult(BaseModel):
    """The result of executing a plan."""

    run_id: str
    plan_id: str
    outcome: outcomes.RunOutcome | None = Field(
        None, description="Whether what was asked for happened: achieved, partial (applied, but not in place), failed "
                          "or cancelled (servers.ansible.outcomes); None for runs recorded before outcomes existed.")
    outcome_reasons: list[str] = Field(default_factory=list, description="Why, most important first.")
    checks: list[dict[str, Any]] = Field(default_factory=list, description="[{name, ok, evidence, host, kind, "
                                                                           "target}] after the run.")
    skipped: list[dict[str, Any]] = Field(default_factory=list, description="[{task, host, condition}]: tasks "
                                                                            "skipped, with the condition.")
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
        duration_s=round((row["finished_at"] - row["started_at"]).total_seconds(), 3), outcome=row["outcome"],
        outcome_reasons=row["outcome_reasons"] or [], checks=row["checks"] or [], skipped=row["skipped"] or [],
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
        expired = await plan_states.expire(rt.store.pool, plan.id)
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
    # planned on another host: laid out here from PostgreSQL, then verified against the approved digest as always
    await snapshot_store.fetch(rt.store.pool, rt.settings.snapshots_dir, plan.snapshot_digest)
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
        if not await plan_states.start_run(conn, plan_id):
            raise not_runnable(plan)
        await conn.execute("INSERT INTO runs (id, plan_id, status, host, heartbeat_at) VALUES ($1,$2,'running',$3,"
                           "now())", run_id, plan_id, socket.gethostname())
    async with _beating(rt, run_id):  # from the row on: a worker on another host tells a live run from a dead one
        with log_context(plan=plan_id, run=run_id):  # every record of this run, in every part, carries both
            run_dir = rt.settings.runs_dir / run_id
            await asyncio.to_thread(_write_json, run_dir / OWNER_FILE, {
                "plan_id": plan_id, "run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
                "started_at": datetime.now(UTC).isoformat()})
            log.info("run %s of plan %s started: %s on %s%s", run_id, plan_id, plan.playbook, plan.inventory,
                     f" (limit {plan.host_limit})" if plan.host_limit else "")
            started = asyncio.get_running_loop().time()
            unrecorded: list[TaskEvent] = []

            async def record(event: TaskEvent) -> None:
                """Store the event; while the store is down keep it (the run goes on: the artifacts are its record)."""
                if event.status in ("ok", "changed", "skipped"):
                    log.info("%s on %s: %s", event.task, event.host, event.status)
                else:
                    log.warning("%s on %s: %s (%s)", event.task, event.host, event.status, event.message[:300])
                try:
                    await _store_events(rt, run_id, [*unrecorded, event])
                    unrecorded.clear()
                except Exception as exc:  # the store stopped: never stop a run on the machines for it
                    if not unrecorded:
                        log.warning("run %s: events not stored (%s); the run goes on, its artifacts are its record",
                                    run_id, exc)
                        report_error("ansible", "store_lost_during_run", f"events of {run_id} not stored: {exc}", "critical",
                                     {"plan": plan_id})
                    unrecorded.append(event)
                if on_event is not None:
                    try:
                        await on_event(event)
                    except Exception as exc:  # a progress listener (the bus) down is no reason to stop the run either
                        log.warning("run %s: progress not published: %s", run_id, exc)

            try:
                assert snap is not None  # claimed above, so the plan was approved and its snapshot verified
                run_path, roles_path = plan.playbook, None
                if plan.generated_playbook is not None:  # exactly the text the human approved, never the repo's
                    run_path = str(generated_playbooks.stage(snap.tree, rt.settings.runs_dir / run_id / "generated",
                                                             Path(plan.playbook).name, plan.generated_playbook))
                    roles_path = generated_playbooks.role_bases(catalog, snap.tree)
                project = catalog.projects.get(plan.project)
                in_project = catalog.using(project, missing="-") if project is not None else catalog
                typed = prompted.held(plan_id)
                secrets = secret_vars_store.load(rt.settings.secrets_dir, plan_id)
                remember([secrets, typed.vault if typed else None, typed.become if typed else None])
                chosen = None if typed and typed.vault else preview.vault_password(
                    in_project, rt.settings.ansible.vault_password_file, rt.settings.ansible.allow_repo_vault_scripts)
                # the snapshot's copy, or a private copy checked against the plan's digest: never the live file
                vault = preview.vault_for_run(chosen, catalog.root, snap, run_dir)
                expected = [run_checks.Check.from_dict(c) for c in plan.expectations]
                # what the plan showed it would check, read-only, in the same ansible-playbook call
                vars_from = Path(run_path).parent if plan.generated_playbook else (snap.tree / plan.playbook).parent
                verify = run_checks.stage(run_dir / "verify", vars_from, expected)
                since = datetime.now(UTC).timestamp()
                outcome = await undo.keeping(run_playbook, plan_id)(  # keeps before-states for `chiffon undo`
                    snap.tree, run_path, snap.tree / plan.inventory, rt.settings.runs_dir / run_id,
                    check=False, limit=plan.host_limit, tags=plan.tags, skip_tags=plan.skip_tags,
                    extra_vars={**plan.extra_vars, **secrets}, secret_values=secrets,
                    pass_env=rt.settings.ansible.pass_env,
                    roles_path=roles_path, project=plan.project if plan.generated_playbook is None else "",
                    vault_password_file=vault, typed=typed,
                    timeout_s=rt.settings.ansible.run_timeout_s, forks=rt.settings.ansible.forks, on_event=record,
                    verify=verify,
                )
                results = await run_checks.results(expected, outcome.probes, since) if expected else []
            except Exception as exc:  # its message may quote a secret: masked by value (remembered above) and pattern
                outcome = Outcome(status="failed", rc=None, failures=[
                    {"task": None, "host": None, "module": None, "message": redact_text(str(exc)), "rc": None}])
                results = []
            except asyncio.CancelledError:  # Ctrl-C, or the worker stopping: Ansible was killed; record that
                message = ("cancelled: the run was stopped (Ctrl-C or its worker stopping) and Ansible killed; the "
                           "hosts may be half-changed: check them, then plan again")
                ended = _ended(plan, run_id, Outcome(status="canceled", rc=None, failures=[
                    {"task": None, "host": None, "module": None, "message": message, "rc": None}]),
                    round(asyncio.get_running_loop().time() - started, 3), unrecorded)
                secret_vars_store.discard(rt.settings.secrets_dir, plan_id)
                await asyncio.to_thread(_write_json, run_dir / OUTCOME_FILE, ended)
                with contextlib.suppress(Exception, TimeoutError):  # else a reconcile records outcome.json later
                    await asyncio.wait_for(_record_outcome(rt, plan, ended), RECORD_ON_CANCEL_S)
                raise
            secret_vars_store.discard(rt.settings.secrets_dir, plan_id)  # the plan ran once; it never runs again
            prompted.forget(plan_id)
            duration = round(asyncio.get_running_loop().time() - started, 3)
            ended = _ended(plan, run_id, outcome, duration, unrecorded, results,
                           timeout_s=rt.settings.ansible.run_timeout_s)
            await asyncio.to_thread(_write_json, run_dir / OUTCOME_FILE, ended)  # the record, whatever the store does next
            log.info("run %s ended: %s (Ansible %s) in %.1f s: %s", run_id, ended["outcome"], ended["status"], duration,
                     ended["outcome_reasons"][0] if ended["outcome_reasons"] else "")
            try:
                return await _record_outcome(rt, plan, ended)
            except Exception as exc:
                if not _store_gone(exc):
                    raise
                raise StoreUnavailable(
                    f"run {run_id} ended {ended['status']}, but PostgreSQL is unreachable ({type(exc).__name__}: "
                    f"{exc}); its outcome is kept in {run_dir / OUTCOME_FILE} and recorded when the store is back "
                    f"(`chiffon status {plan_id}`)") from exc


async def _record_outcome(rt: Runtime, plan: Plan, ended: dict[str, Any], note: str | None = None) -> RunResult:
    """Store a run's outcome (from :func:`_ended`, or read back from its ``outcome.json``): its events not stored
    yet, then, holding the run's row lock, the audit commit and the run and plan rows (only from ``running``:
    an outcome is recorded once, however many recorders race);
    ``note`` says how it got here (a reconciliation).

    Raises:
        PlanStateError: the run is no longer ``running`` (another worker recorded it).
    """
    plan_id, run_id, status = plan.id, ended["run_id"], ended["status"]
    failure, warnings, duration = ended["failure"], ended["warnings"], ended["duration_s"]
    verdict, reasons = ended.get("outcome"), ended.get("outcome_reasons") or []  # older outcome.json: none
    if ended["unrecorded"]:
        await _store_events(rt, run_id, [TaskEvent(**e) for e in ended["unrecorded"]])
    async with rt.store.pool.acquire() as conn, conn.transaction():
        # the row lock makes the check and the audit commit one step: of two recorders (a reconcile and a
        # redelivered task), the second waits here, then finds the run recorded
        if await conn.fetchval("SELECT status FROM runs WHERE id=$1 FOR UPDATE", run_id) != "running":
            raise PlanStateError(f"run {run_id} of {plan_id} was already recorded")
        sha = await asyncio.to_thread(
            rt.audit.record, "run", f"{plan_id} {verdict or status}: {plan.playbook} ({ended['changed']} changed)"
                                    + (f": {reasons[0][:200]}" if reasons else ""),
            {"plan_id": plan_id, "run_id": run_id, "outcome": verdict, "outcome_reasons": reasons,
             "status": status, "rc": ended["rc"], "playbook": plan.playbook,
             "service": plan.service, "hosts": ended["hosts"], "changed": ended["changed"],
             "tags": plan.tags, "stats": ended["stats"], "artifact_data": ended["artifact_data"],
             "failures": ended["failures"], "warnings": warnings, "checks": ended.get("checks", []),
             "skipped": ended.get("skipped", []), "duration_s": duration, **({"reconciled": note} if note else {})},
        )
        await conn.execute(
            "UPDATE runs SET status=$2, rc=$3, stats=$4, artifact_data=$5, changed=$6, failure=$7, "
            "audit_commit=$8, warnings=$9, outcome=$10, outcome_reasons=$11, checks=$12, skipped=$13, "
            "finished_at=now() WHERE id=$1 AND status='running'",
            run_id, status, ended["rc"], ended["stats"], ended["artifact_data"], ended["changed"], failure, sha,
            warnings, verdict, reasons, ended.get("checks", []), ended.get("skipped", []),
        )
        await plan_states.finish_run(conn, plan_id, status)
    metrics.RUNS.labels(status).inc()
    await plan_events.publish(rt, "run_finished", plan_id, run_id=run_id, outcome=verdict, status=status,
                              reason=reasons[0] if reasons else None, playbook=plan.playbook)
    if verdict is not None:
        metrics.RUN_OUTCOMES.labels(verdict).inc()
    if verdict == "partial":  # exit 0, yet what was asked for is not in place: as loud as a failure
        report_error("ansible", "run_partial", f"{plan.playbook}: {reasons[0] if reasons else 'partial'}", "error",
                     {"plan": plan_id})
    metrics.RUN_SECONDS.observe(duration)
    if failure is not None:
        for failed in ended["failures"] or [failure]:
            report_error("ansible", "run_failed", f"{plan.playbook}: {failed.get('task') or 'the run'} failed: "
                         f"{failed.get('message') or 'no message'}", "error",
                         {"plan": plan_id, "host": failed.get("host")})
    monitors = ended["artifact_data"].get("monitors")
    return RunResult(
        run_id=run_id, plan_id=plan_id, status=status, rc=ended["rc"], playbook=plan.playbook,
        hosts=ended["hosts"], changed=ended["changed"],
        monitors=list(monitors) if isinstance(monitors, list) else None, artifact_data=ended["artifact_data"],
        failure=failure, warnings=warnings, audit_commit=sha, duration_s=duration, outcome=verdict,
        outcome_reasons=reasons, checks=ended.get("checks", []), skipped=ended.get("skipped", []),
    )


RECORD_ON_CANCEL_S = 2.0  # a cancelled run's outcome is stored if the store answers this fast, else reconciled
OWNER_FILE = "owner.json"  # in the run's folder: which process runs it (plan, run, pid, host, start)
OUTCOME_FILE = "outcome.json"  # written when ansible-runner is done, before any store write: the run's record


def _ended(plan: Plan, run_id: str, outcome: Outcome, duration: float, unrecorded: list[TaskEvent],
           results: list[run_checks.Result] | None = None, timeout_s: int | None = None) -> dict[str, Any]:
    """A finished run as JSON: what :func:`_record_outcome` stores, and what ``outcome.json`` keeps."""
    status = "succeeded" if outcome.status == "successful" else "failed"
    verdict = outcomes.judge(outcome.status, outcome.events, outcome.failures, results or [], outcome.artifact_data,
                             timeout_s=timeout_s)
    return {"plan_id": plan.id, "run_id": run_id, "outcome": verdict.outcome, "outcome_reasons": verdict.reasons,
            "checks": verdict.checks, "skipped": verdict.skipped, "ignored": verdict.ignored,
            "status": status, "rc": outcome.rc, "stats": outcome.stats,
            "artifact_data": outcome.artifact_data, "failures": outcome.failures,
            "failure": outcome.failures[0] if outcome.failures else None, "changed": outcome.changed,
            "hosts": outcome.hosts or plan.hosts,
            "warnings": preview.run_warnings(outcome.artifact_data) if status == "succeeded" else [],
            "duration_s": duration, "unrecorded": [e.as_dict() for e in unrecorded],
            "ended_at": datetime.now(UTC).isoformat()}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    tmp.replace(path)


async def _store_events(rt: Runtime, run_id: str, events: list[TaskEvent]) -> None:
    await rt.store.pool.executemany(
        "INSERT INTO run_events (run_id, seq, event, host, task, module, changed, message) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT DO NOTHING",
        [(run_id, e.seq, e.status, e.host, e.task, e.module, e.changed, e.message) for e in events])


def _store_gone(exc: BaseException) -> bool:
    """Whether ``exc`` says PostgreSQL is unreachable (refused, reset, closed), not that a statement failed."""
    import asyncpg  # loaded with the store already; imported here so this module stays light to import


    return isinstance(exc, (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                            asyncpg.CannotConnectNowError))


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


RUN_HEARTBEAT_S = 5.0  # how often a running run's process says so (runs.heartbeat_at)
RUN_SILENT_S = 30.0  # a run of another host whose heartbeat is older than this is reconciled as interrupted


@contextlib.asynccontextmanager
async def _beating(rt: Runtime, run_id: str) -> AsyncIterator[None]:
    """While the block runs, set ``runs.heartbeat_at`` every :data:`RUN_HEARTBEAT_S` (a store that does not
    answer is skipped: the run goes on)."""
    async def beat() -> None:
        while True:
            await asyncio.sleep(RUN_HEARTBEAT_S)
            with contextlib.suppress(Exception):
                await rt.store.pool.execute(
                    "UPDATE runs SET heartbeat_at = now() WHERE id = $1 AND status = 'running'", run_id)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def reconcile(rt: Runtime) -> list[str]:
    """Record the outcome of every run left ``running`` by a process that stopped; the ids of the runs
    reconciled. Nothing runs again: a run is only recorded.

    * ``outcome.json`` in this host's run folder (Ansible finished, the store was down when it ended): that
      outcome.
    * no outcome, and the process in ``owner.json`` is gone from this host: ``failed``, with the reason (the
      hosts may be half-changed: check them).
    * a run of another host (``runs.host``) whose heartbeat is older than :data:`RUN_SILENT_S` (its worker was
      killed, or its host went down): ``failed`` the same way, naming the host. A run of another host that still
      beats, or one of this host owned by a live process, is left alone.
    """
    done = []
    for row in await rt.store.pool.fetch(
            "SELECT id, plan_id, host, extract(epoch FROM now() - heartbeat_at) AS silent_s FROM runs "
            "WHERE status='running' ORDER BY started_at"):
        run_dir = rt.settings.runs_dir / row["id"]
        outcome_file, owner_file = run_dir / OUTCOME_FILE, run_dir / OWNER_FILE
        plan = await get_plan(rt, row["plan_id"])
        here = socket.gethostname()
        if outcome_file.exists():
            ended, note = json.loads(outcome_file.read_text()), "recorded from outcome.json after the store returned"
        else:
            owner = json.loads(owner_file.read_text()) if owner_file.exists() else None
            if row["host"] and row["host"] != here:
                silent = float(row["silent_s"]) if row["silent_s"] is not None else 0.0
                if silent <= RUN_SILENT_S:
                    continue
                message = (f"interrupted: the process running it on {row['host']} stopped answering (no heartbeat "
                           f"for {silent:.0f} s) before the run ended; the hosts may be half-changed: check them, "
                           "then plan again")
            elif owner is None or owner.get("host") != here or _alive(int(owner["pid"])):
                continue
            else:
                message = (f"interrupted: the process running it (pid {owner['pid']}) stopped before the run ended; "
                           "the hosts may be half-changed: check them, then plan again")
            ended = {"plan_id": plan.id, "run_id": row["id"], "outcome": "failed", "outcome_reasons": [message],
                     "checks": [], "skipped": [], "status": "failed", "rc": None, "stats": {},
                     "artifact_data": {}, "failures": [{"task": None, "host": None, "module": None, "message": message,
                                                        "rc": None}],
                     "failure": {"task": None, "host": None, "module": None, "message": message, "rc": None},
                     "changed": 0, "hosts": plan.hosts, "warnings": [], "duration_s": 0.0, "unrecorded": []}
            note = "the process running it stopped"
        try:
            await _record_outcome(rt, plan, ended, note)
        except PlanStateError:
            continue
        log.info("run %s of %s reconciled: %s (%s)", row["id"], row["plan_id"], ended["status"], note)
        done.append(row["id"])
    return done


async def settled_run(rt: Runtime, plan_id: str, poll_s: float = 2.0) -> RunResult | None:
    """The run of ``plan_id`` once it is recorded: reconciled here as soon as its process is known to have
    stopped (on this host: its pid; on another: :data:`RUN_SILENT_S` without a heartbeat), waiting at most that
    long plus a heartbeat. None when it is still running then (its process still beats: leave it)."""
    deadline = asyncio.get_running_loop().time() + RUN_SILENT_S + RUN_HEARTBEAT_S + poll_s
    while True:
        await reconcile(rt)
        done = await existing_run(rt, plan_id)
        if done is not None or asyncio.get_running_loop().time() > deadline:
            return done
        await asyncio.sleep(poll_s)


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
