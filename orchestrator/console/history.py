"""Run history for the console's Runs page, with no web code: the runs table with its filters and search, and
one run followed live (:func:`follow`).

A row is an approved plan (queued, waiting on a busy host, expired) or a run. Its **state** is the run's outcome
(``achieved``, ``partial``, ``failed``, ``cancelled``: :mod:`chiffon.servers.ansible.outcomes`) once it ended,
``running`` while it runs, else ``queued``, ``waiting`` or ``expired`` from the plan. Every filter reaches SQL as a
bound parameter; text filters are ``ILIKE`` substrings with ``%``, ``_`` and ``\\`` escaped (:func:`like`), so a
filter of ``%`` finds a literal percent sign, never every row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from chiffon.servers.ansible import execution, plans
from chiffon.shared.errors import InvalidInput
from chiffon.shared.runtime import Runtime

OUTCOMES = ("achieved", "partial", "failed", "cancelled")
STATES = (*OUTCOMES, "running", "queued", "waiting", "expired")
ENDED = frozenset({*OUTCOMES, "succeeded", "expired", "rejected"})  # nothing about the run changes any more
HEADERS = ["plan", "repo", "playbook", "hosts", "outcome", "Ansible", "approver", "started (UTC)", "duration"]
MAX_FILTER_CHARS = 200
LOG_LIMIT = 5000  # events shown per run (execution.run_events' own ceiling)

# the row's state, computed once in SQL so that the outcome filter and the table agree
_STATE_SQL = ("CASE WHEN r.id IS NULL THEN (CASE p.status WHEN 'paused' THEN 'waiting' WHEN 'expired' THEN 'expired' "
              "ELSE 'queued' END) WHEN r.status = 'running' THEN 'running' ELSE COALESCE(r.outcome, r.status) END")
_WHEN_SQL = "COALESCE(r.started_at, a.decided_at, p.updated_at)"
_RUNS_SQL = f"""
SELECT p.id AS plan_id, p.repo, p.playbook, p.hosts, p.request, r.id AS run_id, r.status AS run_status,
       a.approver, {_WHEN_SQL} AS started_at, r.finished_at, {_STATE_SQL} AS state
FROM plans p
LEFT JOIN approvals a ON a.plan_id = p.id
LEFT JOIN runs r ON r.plan_id = p.id
WHERE (r.id IS NOT NULL OR a.decision = 'approved')
  AND ($1::text IS NULL OR p.repo ILIKE $1 ESCAPE '\\')
  AND ($2::text IS NULL OR p.playbook ILIKE $2 ESCAPE '\\')
  AND ($3::text IS NULL OR p.hosts ? $3)
  AND ($4::text IS NULL OR {_STATE_SQL} = $4)
  AND ($5::text IS NULL OR a.approver ILIKE $5 ESCAPE '\\')
  AND ($6::timestamptz IS NULL OR {_WHEN_SQL} >= $6)
  AND ($7::timestamptz IS NULL OR {_WHEN_SQL} < $7)
  AND ($8::text IS NULL OR p.request ILIKE $8 ESCAPE '\\')
ORDER BY {_WHEN_SQL} DESC
LIMIT $9
"""


class RunFilter(BaseModel):
    """What the Runs page's filters ask for; an empty field does not filter."""

    repo: str = Field("", description="Substring of the repo's path (case-insensitive).")
    playbook: str = Field("", description="Substring of the playbook's path (case-insensitive).")
    host: str = Field("", description="A host the plan targets, exactly (ai, desktop...).")
    outcome: str = Field("", description=f"One of {', '.join(STATES)}.")
    approver: str = Field("", description="Substring of the approver as recorded (alice (console)...).")
    since: str = Field("", description="Started at or after: 7d, 12h, 30m, 2w ago or an ISO date/time (UTC).")
    until: str = Field("", description="Started before: an ISO date (that whole day included) or date/time (UTC).")
    search: str = Field("", description="Substring of the plan's request, the words the user asked with.")


@dataclass
class RunRow:
    """One row of the runs table. ``started_at``: the run's start, else its approval (UTC); ``duration_s``: None
    until the run ended."""

    plan_id: str
    run_id: str | None
    repo: str
    playbook: str
    hosts: list[str]
    request: str | None
    state: str
    ansible: str | None
    approver: str | None
    started_at: datetime | None
    duration_s: float | None

    def cells(self) -> list[str]:
        """``HEADERS``' cells as plain text (the table component shows text, never HTML)."""
        return [self.plan_id, Path(self.repo).name, self.playbook, ", ".join(self.hosts), self.state,
                self.ansible or "", self.approver or "",
                self.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if self.started_at else "",
                duration_text(self.duration_s, self.state)]


def like(text: str) -> str:
    """``text`` as an ``ILIKE ... ESCAPE '\\'`` substring pattern: ``%``, ``_`` and ``\\`` match themselves."""
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


def duration_text(seconds: float | None, state: str = "") -> str:
    """``12 s``, ``3 min 04 s``, ``1 h 02 min``; ``running`` or empty while there is no end."""
    if seconds is None:
        return "running" if state == "running" else ""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _text(value: str, name: str) -> str | None:
    value = value.strip()
    if len(value) > MAX_FILTER_CHARS:
        raise InvalidInput(name, f"at most {MAX_FILTER_CHARS} characters")
    return value or None


def _until(value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):  # a day: all of it
            return datetime.fromisoformat(value).replace(tzinfo=UTC) + timedelta(days=1)
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput("until", f"{value!r} is not an ISO date (2026-11-01) or date/time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def query_args(f: RunFilter) -> list[Any]:
    """The bound parameters ``$1..$8`` of the runs query for ``f``.

    Raises:
        InvalidInput: an outcome not in ``STATES``, a ``since``/``until`` that is not a date, a field over 200
            characters (the field is named).
    """
    from chiffon.shared.audit import parse_since

    outcome = _text(f.outcome, "outcome")
    if outcome is not None and outcome not in STATES:
        raise InvalidInput("outcome", f"{outcome!r} is not one of {', '.join(STATES)}")
    repo, playbook, approver, search = (_text(v, n) for v, n in ((f.repo, "repo"), (f.playbook, "playbook"),
                                                                 (f.approver, "approver"), (f.search, "search")))
    since = _text(f.since, "since")
    return [like(repo) if repo else None, like(playbook) if playbook else None, _text(f.host, "host"), outcome,
            like(approver) if approver else None, parse_since(since) if since else None, _until(f.until),
            like(search) if search else None]


async def run_rows(rt: Runtime, f: RunFilter | None = None, *, limit: int = 100) -> list[RunRow]:
    """The runs matching ``f``, newest first, at most ``limit`` (1..500).

    Raises:
        InvalidInput: a bad filter (see :func:`query_args`) or ``limit``.
    """
    if not 1 <= limit <= 500:
        raise InvalidInput("limit", "must be within 1..500")
    rows = await rt.store.pool.fetch(_RUNS_SQL, *query_args(f or RunFilter()), limit)
    out = []
    for r in rows:
        ended = r["finished_at"]
        out.append(RunRow(
            plan_id=r["plan_id"], run_id=r["run_id"], repo=r["repo"], playbook=r["playbook"],
            hosts=[str(h) for h in (r["hosts"] or [])], request=r["request"], state=r["state"],
            ansible=r["run_status"], approver=r["approver"], started_at=r["started_at"],
            duration_s=(ended - r["started_at"]).total_seconds() if ended and r["run_id"] else None))
    return out


def state_of(plan: plans.Plan, run: dict[str, Any] | None) -> str:
    """The state of ``plan`` and its run (``decision_and_run``'s run or None), as the runs table names it; a plan
    never approved reads as its own status (pending_approval, rejected)."""
    if run is None:
        return {"paused": "waiting", "approved": "queued"}.get(plan.status, plan.status)
    if run["status"] == "running":
        return "running"
    return str(run.get("outcome") or run["status"])


@dataclass
class Followed:
    """One plan's run as last read: ``events`` (``execution.run_events`` dicts, in order), ``seq`` the last
    event's number, ``done`` once nothing about the run can change (no query is made after that)."""

    plan: plans.Plan
    state: str
    decision: dict[str, Any] | None
    run: dict[str, Any] | None
    events: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    done: bool = False


async def follow(rt: Runtime, plan_id: str, last: Followed | None = None) -> Followed:
    """``plan_id``'s run now, reading only the events after those ``last`` already holds (when ``last`` is the
    same plan); ``last`` itself, with no query, once it was ``done``.

    Raises:
        PlanNotFound: no such plan.
    """
    if last is not None and last.plan.id == plan_id and last.done:
        return last
    plan = await plans.get_plan(rt, plan_id)
    decision, run = await plans.decision_and_run(rt, plan_id)
    if run is not None:
        extra = await rt.store.pool.fetchrow("SELECT warnings FROM runs WHERE id=$1", run["id"])
        run["warnings"] = list(extra["warnings"] or []) if extra else []
    same = last is not None and last.plan.id == plan_id and last.run is not None and run is not None \
        and last.run["id"] == run["id"]
    events = list(last.events) if same and last is not None else []
    seq = last.seq if same and last is not None else 0
    if run is not None:
        new = await execution.run_events(rt, run["id"], after_seq=seq, limit=LOG_LIMIT)
        events += new
        seq = new[-1]["seq"] if new else seq
    state = state_of(plan, run)
    done = state in ENDED and (run is None or run["status"] != "running")
    return Followed(plan=plan, state=state, decision=decision, run=run, events=events[-LOG_LIMIT:], seq=seq,
                    done=done)


def choices(rows: list[RunRow]) -> list[tuple[str, str]]:
    """``(label, plan id)`` for the Runs page's picker: id, playbook and repo, never a state (a label is not
    refreshed while a run goes on; the table and the run view read the state live)."""
    return [(f"{r.plan_id} · {r.playbook} · {Path(r.repo).name}", r.plan_id) for r in rows]
