"""The Plans page's rules and views with no web framework code: the pending table, a plan's review as HTML, the
typed confirmation a high-risk plan needs, the recap after an approval, and the repos a request may name.

A high-risk plan (``risk == "high"``: something would be deleted or pruned, or the check failed) is approved only
after the reviewer types one of its hosts or its id (:func:`check_confirmation`); the console's approve action
enforces it on the server, whatever the browser did. Every string from the plan is escaped (:func:`html.escape`).
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from chiffon.orchestrator.console.review import diff_html, risk_badge, warnings_html
from chiffon.servers.ansible.plans import Plan
from chiffon.shared.errors import InvalidInput

PENDING_HEADERS = ["age", "repo", "playbook", "hosts", "risk", "plan"]


def age(created: datetime, now: datetime | None = None) -> str:
    """How long ago ``created`` was, in the largest whole unit: ``just now`` (under a minute), ``5 min``, ``3 h``,
    ``2 d``. Coarse on purpose: the live table redraws only when a row changes, so at most once a minute."""
    seconds = max(0, int(((now or datetime.now(UTC)) - created).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return "just now"


def pending_rows(pending: list[Plan], now: datetime | None = None) -> list[list[str]]:
    """The pending table, one row per plan as given (newest first): ``[age, repo folder, playbook (+tags), hosts,
    risk, plan id]``. Plain strings: the table shows them as text, never as markup."""
    return [[age(p.created_at, now), Path(p.repo).name, p.playbook + (f" --tags {','.join(p.tags)}" if p.tags else ""),
             ", ".join(p.hosts) or "(none)", p.risk + (" · blocked" if p.blocked_reason else ""), p.id]
            for p in pending]


def repo_choices(bound: Path | None, recorded: list[str]) -> list[str]:
    """The repos a console request may name: the console's own (``--repo``, ``CHIFFON_REPO``, ``repo:``) first,
    then those recorded by earlier plans (made through the CLI or an IDE by someone who could name them), each
    once. Never a path typed on the page: the web form picks from these."""
    return list(dict.fromkeys([*([str(bound)] if bound else []), *recorded]))


def check_repo(repo: str | None, allowed: list[str]) -> Path:
    """``repo`` as a Path when it is one of ``allowed`` (:func:`repo_choices`). Raises InvalidInput otherwise."""
    if not allowed:
        raise InvalidInput("repo", "no IaC repo is known to the console: `chiffon config set repo PATH` (or "
                                   "start it with --repo PATH, or set CHIFFON_REPO)")
    if repo not in allowed:
        raise InvalidInput("repo", f"pick one of the known repos: {', '.join(allowed)}")
    return Path(repo)


def needs_confirmation(plan: Plan) -> bool:
    """True for a high-risk plan: its approval needs a host or the plan id typed (:func:`check_confirmation`)."""
    return plan.risk == "high"


def confirmed(plan: Plan, typed: str | None) -> bool:
    """True when ``plan`` needs no confirmation, or ``typed`` (surrounding spaces ignored, case kept) is one of
    its hosts or its id."""
    text = (typed or "").strip()
    return not needs_confirmation(plan) or (bool(text) and (text == plan.id or text in plan.hosts))


def check_confirmation(plan: Plan, typed: str | None) -> None:
    """Refuse an approval of a high-risk ``plan`` unless ``typed`` names one of its hosts or its id.

    Raises:
        InvalidInput: (field ``confirm``) the plan is high risk and ``typed`` is empty or names neither; nothing
            is approved.
    """
    if not confirmed(plan, typed):
        hosts = ", ".join(plan.hosts)
        raise InvalidInput("confirm", "this plan is high risk: type " + (f"one of its hosts ({hosts}) or " if hosts
                                                                         else "") + f"its id ({plan.id}) to approve it")


def run_link(plan_id: str) -> str:
    """The console link that opens ``plan_id``'s run on the Runs page (``?plan=ID``, :mod:`.links`)."""
    return "?" + urlencode({"plan": plan_id})


def recap_html(plan: Plan, operator: str) -> str:
    """What was just approved: playbook, tags, hosts, limit, risk, the approver, and the link to the run."""
    e = html.escape
    rows = [("Playbook", plan.playbook), ("Tags", ", ".join(plan.tags) or "(whole playbook)"),
            ("Hosts", ", ".join(plan.hosts) or "(none)"), ("Limit", plan.host_limit or "(none)"),
            ("Risk", plan.risk), ("Approver", f"{operator} (console)")]
    items = "".join(f"<li><b>{e(k)}:</b> {e(v)}</li>" for k, v in rows)
    return (f'<div class="cf-recap"><p><b>Approved {e(plan.id)}</b>; its run is queued.</p><ul>{items}</ul>'
            f'<p><a class="cf-run-link" href="{e(run_link(plan.id))}">Follow the run of {e(plan.id)} on the Runs '
            f'page</a></p></div>')


def _field(name: str, value: str) -> str:
    return f"<li><b>{html.escape(name)}:</b> {html.escape(value)}</li>"


def _candidates(plan: Plan) -> str:
    """The other answers the planner weighed when it was not sure (``plan.match``), as a list; "" if sure."""
    answer: dict[str, Any] = ((plan.match or {}).get("planner") or {}).get("answer") or {}
    others = [c for c in answer.get("candidates") or [] if c.get("unit") != (plan.match or {}).get("unit")]
    if answer.get("sure", True) or not others:
        return ""
    items = "".join(f"<li><code>{html.escape(str(c.get('playbook')))}</code>"
                    + (f" --tags {html.escape(','.join(c.get('tags') or []))}" if c.get("tags") else "")
                    + f": {html.escape(str(c.get('description') or ''))}</li>" for c in others)
    return ("<p><b>The request could also mean:</b> (ask again naming one, or Request changes)</p>"
            f"<ul>{items}</ul>")


def plan_html(plan: Plan) -> str:
    """A plan's review: what would run where, the risk and why, what blocks it, warnings, the checks made after
    the run, the planner's other candidates when it was not sure, and the diff (:func:`review.diff_html`)."""
    e = html.escape
    vars_text = ", ".join(f"{k}={v}" for k, v in plan.extra_vars.items()) or "(none)"
    fields = [("Status", plan.status + (f" (waiting: {plan.paused_reason})" if plan.paused_reason else "")),
              ("Request", plan.request or "(none)"), ("Repo", plan.repo), ("Hosts", ", ".join(plan.hosts) or "(none)"),
              ("Limit", plan.host_limit or "(none)"), ("Tags", ", ".join(plan.tags) or "(whole playbook)"),
              ("Skip tags", ", ".join(plan.skip_tags) or "(none)"), ("Extra vars", vars_text)]
    if plan.supersedes:
        fields.append(("Replaces", f"{plan.supersedes} (changes were requested)"))
    parts = [f'<div class="cf-plan"><h3>{e(plan.id)}: {e(plan.playbook)} {risk_badge(plan.risk)}</h3>',
             "<ul>" + "".join(_field(k, v) for k, v in fields) + "</ul>",
             f'<p><b>Why {e(plan.risk)} risk:</b></p><ul class="cf-reasons">'
             + "".join(f"<li>{e(r)}</li>" for r in plan.risk_reasons or ["no reason given"]) + "</ul>"]
    if plan.blocked_reason:
        parts.append(f'<p class="cf-blocked"><b>Cannot be approved:</b> {e(plan.blocked_reason)}</p>')
    if plan.warnings:
        parts.append("<p><b>Warnings</b></p>" + warnings_html(plan.warnings))
    if plan.expectations:
        parts.append("<p><b>Checked after the run:</b></p><ul>" + "".join(
            f"<li>{e(str(c.get('name')))} ({e(str(c.get('kind')))} {e(str(c.get('target')))} on "
            f"{e(str(c.get('hosts')))})</li>" for c in plan.expectations) + "</ul>")
    parts.append(_candidates(plan))
    parts.append("<p><b>Check-mode diff</b></p>" + diff_html(plan.diff, plan.hosts or None))
    parts.append("</div>")
    return "".join(parts)
