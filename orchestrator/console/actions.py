"""What the console's pages do and show, with no web code: each function takes the runtime (and the operator
where a decision is made) and returns plain text, Markdown or rows.

Every string that comes from a repo, a request, Ansible or an agent is escaped before it is put in Markdown
(:func:`md`, :func:`fenced`): a task name holding ``[click](javascript:...)`` or ``<img onerror>`` shows as
written. Decisions go through :func:`chiffon.servers.ansible.plans.decide` with the logged-in operator as the
approver and ``console`` as the channel; an approved plan runs through the one run path (a queued ``infra``
task, :func:`chiffon.orchestrator.runs.queue_run`).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from chiffon.orchestrator.planner import plan_request
from chiffon.orchestrator.runs import queue_run
from chiffon.servers.ansible import plans
from chiffon.servers.ansible.request import PlanRequest
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import ChiffonError, InvalidInput, NoMatch, PlanStateError
from chiffon.shared.runtime import Runtime

CHANNEL = "console"
MAX_COMMENT_CHARS = 2000
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~&])")


Loader = tuple[Any, Any]  # (a coroutine function of no arguments, its output components), run as a page loads


async def said(work: Any) -> str:
    """Run ``work`` (a coroutine giving a message); a ChiffonError becomes its message, shown on the page."""
    try:
        return str(await work)
    except ChiffonError as exc:
        return f"**Refused:** {md(exc)}"


def md(text: object) -> str:
    """``text`` with every Markdown and HTML special character escaped (one line: newlines become spaces)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def fenced(text: str, lang: str = "") -> str:
    """``text`` in a code fence longer than any backtick run inside it (so it cannot close the fence)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def approver(operator: str) -> str:
    return f"{operator} (console)"


async def pending(rt: Runtime) -> list[tuple[str, str]]:
    """``(label, plan id)`` of the plans waiting for a decision, newest first."""
    return [(f"{p.id} · {p.playbook} · {p.risk} risk", p.id)
            for p in await plans.listing(rt, ["pending_approval"], limit=100)]


def plan_markdown(plan: plans.Plan) -> str:
    """Everything a reviewer needs before deciding: playbook, hosts, tags, limit, extra vars, risk and why,
    warnings (among them the tasks that run even in check mode, :func:`preview.check_mode_notes`), and the full
    check-mode diff."""
    lines = [f"### {md(plan.id)}: {md(plan.playbook)}",
             f"**Status:** {md(plan.status)}" + (f" (waiting: {md(plan.paused_reason)})" if plan.paused_reason else ""),
             f"**Request:** {md(plan.request or '(none)')}",
             f"**Hosts:** {md(', '.join(plan.hosts) or '(none)')}",
             f"**Limit:** {md(plan.host_limit or '(none)')} · **Tags:** {md(', '.join(plan.tags) or '(whole playbook)')}"
             f" · **Skip tags:** {md(', '.join(plan.skip_tags) or '(none)')}",
             f"**Extra vars:** {md(', '.join(f'{k}={v}' for k, v in plan.extra_vars.items()) or '(none)')}",
             f"**Risk:** {md(plan.risk)}: {md('; '.join(plan.risk_reasons) or 'no reason given')}"]
    if plan.supersedes:
        lines.append(f"**Replaces:** {md(plan.supersedes)} (changes were requested)")
    if plan.blocked_reason:
        lines.append(f"**Cannot be approved:** {md(plan.blocked_reason)}")
    for warning in plan.warnings:
        lines.append(f"- ⚠ {md(warning)}")
    if plan.expectations:  # what the run is verified for afterwards (servers.ansible.checks)
        lines.append("**Checked after the run:** " + "; ".join(
            f"{md(c['name'])} ({md(c['kind'])} {md(c['target'])} on {md(c['hosts'])})" for c in plan.expectations))
    lines.append("**Check-mode diff:**")
    lines.append(fenced(plan.diff or "(no changes predicted)", "diff"))
    return "\n\n".join(lines)


async def show_plan(rt: Runtime, plan_id: str | None) -> str:
    if not plan_id:
        return "No plan selected."
    return plan_markdown(await plans.get_plan(rt, plan_id))


async def approve(rt: Runtime, plan_id: str, operator: str, *, reason: str | None = "", code: str | None = "",
                  confirm: str | None = "") -> str:
    """Approve ``plan_id`` as ``operator`` (with the TOTP ``code`` when approvals need one) and queue its run. A
    high-risk plan needs ``confirm``: one of its hosts or its id, typed (:func:`approving.check_confirmation`).

    Raises PlanNotFound, PlanStateError or InvalidInput (see :func:`plans.decide`; field ``confirm`` for a
    high-risk plan without the typed confirmation, and then nothing is approved).
    """
    from chiffon.orchestrator.console.approving import check_confirmation

    _check_id(plan_id)
    check_confirmation(await plans.get_plan(rt, plan_id), confirm)
    await plans.decide(rt, plan_id, "approved", approver=approver(operator), channel=CHANNEL,
                       reason=(reason or "").strip()[:MAX_COMMENT_CHARS] or None, code=(code or "").strip() or None)
    await queue_run(rt, plan_id)
    return f"Approved {plan_id} as {operator}; its run is queued. Follow it on the Runs page."


async def reject(rt: Runtime, plan_id: str, operator: str, *, reason: str | None = "") -> str:
    """Reject ``plan_id`` as ``operator``. Raises PlanNotFound or PlanStateError."""
    _check_id(plan_id)
    await plans.decide(rt, plan_id, "rejected", approver=approver(operator), channel=CHANNEL,
                       reason=(reason or "").strip()[:MAX_COMMENT_CHARS] or None)
    return f"Rejected {plan_id}; nothing ran."


async def request_changes(svc: AnsibleService, plan_id: str, operator: str, comment: str | None) -> plans.Plan:
    """Plan ``plan_id``'s request again with the reviewer's ``comment`` added, then reject the old plan with the
    comment and link the new one to it. Returns the new plan (pending approval).

    The request plus the comment goes through the planner (which may pick another playbook, or read a limit or
    vars from it with an LLM tier); when it matches no playbook, the old plan's playbook is checked again with the
    same tags, limit and vars against the repo as it is now. The plan's own repo (``plan.repo``) is planned again,
    whichever repo the console was started with. Nothing changes when the new plan cannot be made.

    Raises:
        InvalidInput: an empty comment, or one over 2,000 characters.
        PlanNotFound, PlanStateError: the plan is unknown or no longer pending.
    """
    _check_id(plan_id)
    comment = (comment or "").strip()
    if not comment:
        raise InvalidInput("comment", "say what should change; the new plan is made with it")
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidInput("comment", f"at most {MAX_COMMENT_CHARS} characters")
    old = await plans.get_plan(svc.rt, plan_id)
    if old.status != "pending_approval":
        raise PlanStateError(f"plan {plan_id} is {old.status}; only a pending plan can be changed")
    request = f"{old.request or old.playbook}\n\nChanges requested by the reviewer: {comment}"
    repo = Path(old.repo)  # the plan's own repo, whichever the console was started with
    try:
        new = await plan_request(svc, PlanRequest(request=request, repo=repo, limit=old.host_limit,
                                                  extra_vars=old.extra_vars or None, skip_tags=old.skip_tags or None))
    except NoMatch:
        new = await plans.create_plan(svc.rt, await svc.catalog(repo), old.playbook, request=request,
                                      limit=old.host_limit, tags=old.tags or None, skip_tags=old.skip_tags or None,
                                      extra_vars=old.extra_vars or None)
    await plans.link_replacement(svc.rt, new.id, old.id)
    await plans.decide(svc.rt, plan_id, "rejected", approver=approver(operator), channel=CHANNEL,
                       reason=f"changes requested: {comment}")
    return new.model_copy(update={"supersedes": old.id})


async def undo(svc: AnsibleService, plan_id: str) -> str:
    """Plan the undo of ``plan_id``'s finished run (:func:`servers.ansible.undo_plan.plan_undo`): a generated
    playbook putting back the files it changed, checked and stored pending approval like any plan, so it shows on
    the Plans page. Returns Markdown naming the new plan, what it puts back and what is not reversible.

    Raises:
        InvalidInput: no plan picked, or the run kept nothing that can be put back (nothing is stored).
        PlanStateError: the plan has no finished run.
    """
    from chiffon.servers.ansible.undo_plan import plan_undo

    _check_id(plan_id)
    _, run = await plans.decision_and_run(svc.rt, plan_id)
    if run is None or run["status"] == "running":
        raise PlanStateError(f"plan {plan_id} has no finished run to undo")
    undone = await plan_undo(svc, run["id"])
    lines = [f"Undo plan **{md(undone.plan.id)}** for run {md(run['id'])} is pending: review and approve it on the "
             f"Plans page. It puts back {len(undone.restores)} path(s)."]
    lines += [f"- not reversible: {md(x.task)} ({md(x.module)}) on {md(x.host)}: {md(x.reason)}"
              for x in undone.not_reversible]
    return "\n\n".join(lines)


async def audit_rows(rt: Runtime, *, failed: bool = False, since: str = "", service: str = "",
                     plan_id: str = "") -> list[list[str]]:
    """Audit records, newest first: ``[time, kind, plan, service, status, summary, commit]`` (a run's status is
    its outcome when it has one: achieved, partial, failed, cancelled).

    Raises InvalidInput for a bad ``since`` (7d, 12h, 30m, 2w or an ISO date).
    """
    from chiffon.shared.audit import parse_since

    entries = await asyncio.to_thread(
        rt.audit.query, since=parse_since(since) if since.strip() else None, failed=failed,
        service=service.strip() or None, plan_id=plan_id.strip() or None, limit=200)
    return [[e.time.strftime("%Y-%m-%d %H:%M:%S"), str(e.body.get("kind", "")), str(e.body.get("plan_id", "")),
             str(e.body.get("service") or ""), str(e.body.get("outcome") or e.body.get("status") or e.body.get("decision") or ""), e.subject,
             e.commit] for e in entries]


async def host_rows(rt: Runtime) -> list[list[str]]:
    """Each configured host: ``[host, status, reason, CPU %, RAM used/total MB, VRAM used/total MB]`` (figures
    from its last hostd heartbeat; empty when it has none)."""
    from chiffon.shared.hosts import host_states

    names = sorted(rt.settings.hosts)
    states = await host_states(rt.bus, names, rt.settings.hostd.assume_available)
    rows = []
    for name in names:
        state = states[name]
        beat = state.get("heartbeat") or {}
        gpus = beat.get("gpus") or []
        vram = (f"{sum(g.get('vram_used_mb', 0) for g in gpus)}/{sum(g.get('vram_total_mb', 0) for g in gpus)}"
                if gpus else "")
        ram = (f"{beat['ram_total_mb'] - beat['ram_available_mb']}/{beat['ram_total_mb']}"
               if beat.get("ram_total_mb") is not None and beat.get("ram_available_mb") is not None else "")
        cpu = f"{beat['cpu_percent']:.0f}" if beat.get("cpu_percent") is not None else ""
        rows.append([name, state["status"], state["reason"], cpu, ram, vram])
    return rows


async def mark_host(rt: Runtime, host: str, busy: bool, operator: str, reason: str | None = "") -> str:
    """Mark a configured host busy (plans on it pause) or free again. Raises InvalidInput for an unknown host."""
    from chiffon.shared.hosts import set_operator_busy

    if host not in rt.settings.hosts:
        raise InvalidInput("host", f"{host!r} is not a configured host ({', '.join(sorted(rt.settings.hosts))})")
    await set_operator_busy(rt.bus, host, busy, (reason or "").strip()[:200] or "marked on the console", by=operator)
    return f"{host} marked {'busy' if busy else 'free'} by {operator}."


async def task_rows(rt: Runtime) -> list[list[str]]:
    """The newest 100 agent tasks: ``[task, role, status, goal, attempts, created]``."""
    from chiffon.shared.queue import TaskQueue

    tasks = await TaskQueue(rt).list(limit=100)
    return [[t.id, t.role, t.status, t.goal[:120], str(t.attempts), t.created_at.strftime("%Y-%m-%d %H:%M:%S")]
            for t in tasks if t.kind != "noop"]


async def task_steps(rt: Runtime, task_id: str) -> str:
    """The step log of ``task_id``, one line per step."""
    from chiffon.shared.queue import TaskQueue

    if not re.fullmatch(r"[a-z]+-[0-9a-f]{6,40}", task_id.strip()):
        return "Pick a task id from the table."
    queue = TaskQueue(rt)
    task = await queue.get(task_id.strip())
    steps = await queue.steps(task.id)
    lines = [f"{s.at.strftime('%H:%M:%S')} #{s.seq} {s.role} {s.kind}: {_short(s.content)}" for s in steps]
    result = task.error or (task.result or {}).get("summary") or ""
    return "\n".join([f"{task.id} {task.status}" + (f": {result}" if result else ""), *lines])


async def inbox_rows(rt: Runtime) -> list[list[str]]:
    """Unread escalations for a human: ``[id, task, kind, title, at]``."""
    from chiffon.servers.tasks import inbox

    return [[str(m["id"]), str(m.get("task_id", "")), str(m.get("kind", "")), str(m.get("title", "")),
             str(m.get("created_at", ""))[:19]] for m in await inbox.messages(rt)]


async def drift_view(svc: AnsibleService) -> str:
    """The newest drift report (of the console's repo, else of any repo) as Markdown: drifted units per host with
    what would change, units never run, errors; read-only (``chiffon drift`` runs one, ``--plan UNIT`` fixes one)."""
    from chiffon.servers.ansible.drift import last_report

    report = await last_report(svc.rt, svc.repo)
    if report is None:
        return "No drift report yet: run `chiffon drift` (or enable its timer, `drift.schedule`)."
    when = report.created_at.strftime("%Y-%m-%d %H:%M") if report.created_at else "?"
    lines = [f"### Drift of {md(report.repo)}, {md(when)}",
             md(f"{report.units} unit(s) checked in {report.duration_s:.0f} s: {len(report.drifted)} drifted "
                f"unit/host pair(s) ({len(report.new_drift)} new), {len(report.clean)} clean, "
                f"{len(report.never_run)} never-run pair(s), {len(report.errors)} error(s); report {report.id}")]
    for title, entries in (("Drifted: the hosts no longer match the repo", report.drifted),
                           ("Never run by chiffon (not drift)", report.never_run)):
        if entries:
            lines.append(f"#### {title}")
            for d in entries:
                lines.append(f"- **{md(d.unit)}** on **{md(d.host)}**: " + "; ".join(
                    md(f"{t.task}: {t.summary}") for t in d.tasks))
    if report.errors:
        lines.append("#### Could not be checked")
        lines += [f"- **{md(e.unit)}**: {md(e.reason)}" for e in report.errors]
    if report.drifted:
        lines.append(md(f"Plan a fix: chiffon drift --plan {report.drifted[0].unit}"))
    return "\n".join(lines)


def _short(content: dict[str, Any], limit: int = 240) -> str:
    text = " ".join(f"{k}={v}" for k, v in content.items() if k != "step_s")
    return text if len(text) <= limit else text[:limit] + "…"


def _check_id(plan_id: str) -> None:
    if not re.fullmatch(r"plan-[0-9a-f]{10}", plan_id or ""):
        raise InvalidInput("plan", "pick a plan from the list")
