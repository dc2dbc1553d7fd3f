"""A plan's life, written once: the statuses, the allowed transitions and the one function that moves them.

``plans.status`` changes only through :func:`transition` (and the named steps built on it); every other
module asks (:func:`chiffon.servers.ansible.plans.get_plan`), never writes it. Each step is one PostgreSQL
update guarded by the expected current status (``WHERE status = ANY(...)``), so of two approvers or two
workers only one wins; a step the table below does not allow is refused before anything is written.

=================  =================  ==============================================================
from               to                 who, when
=================  =================  ==============================================================
pending_approval   approved           :func:`plans.decide` (never a blocked plan: ``blocked_reason``)
pending_approval   rejected           :func:`plans.decide`
approved           paused             :func:`plans.pause`: a target host is busy or offline
paused             paused             :func:`plans.pause` again: the reason (which hosts) updated
paused             approved           :func:`plans.resume`: the hosts are free
approved           expired            :func:`expire`: the approval outlived ``approvals.ttl``
paused             expired            :func:`expire`, likewise
approved           running            :func:`start_run`: one executor claims the plan
running            succeeded          :func:`finish_run`: the run's outcome recorded
running            failed             :func:`finish_run`, likewise
=================  =================  ==============================================================

``rejected``, ``expired``, ``succeeded`` and ``failed`` are final: nothing leaves them (plan again instead).
A *blocked* plan is not a status: it is ``pending_approval`` with a ``blocked_reason``, which can only be
rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, Protocol, get_args

from chiffon.shared.errors import PlanStateError

PlanStatus = Literal["pending_approval", "approved", "paused", "rejected", "running", "succeeded", "failed",
                     "expired"]

STATUSES: frozenset[str] = frozenset(get_args(PlanStatus))

TRANSITIONS: frozenset[tuple[str, str]] = frozenset({
    ("pending_approval", "approved"),
    ("pending_approval", "rejected"),
    ("approved", "paused"),
    ("paused", "paused"),
    ("paused", "approved"),
    ("approved", "expired"),
    ("paused", "expired"),
    ("approved", "running"),
    ("running", "succeeded"),
    ("running", "failed"),
})
"""Every (from, to) pair a plan may take; anything else is refused (the table in the module docstring)."""

FINAL: frozenset[str] = STATUSES - {src for src, _ in TRANSITIONS}
"""Statuses nothing leaves: rejected, expired, succeeded, failed."""

# the columns a transition may set besides status and updated_at: fixed here, never taken from a caller's text
_FIELDS = frozenset({"paused_reason"})


class _Database(Protocol):
    """An asyncpg pool or connection (a connection when the step is part of a caller's transaction)."""

    async def fetchval(self, query: str, *args: Any) -> Any: ...


def allowed(src: str, to: str) -> bool:
    """Whether a plan may go from ``src`` to ``to``."""
    return (src, to) in TRANSITIONS


def sources(to: str) -> frozenset[str]:
    """The statuses from which a plan may move to ``to`` (empty for ``pending_approval``: only a new plan is)."""
    return frozenset(src for src, dst in TRANSITIONS if dst == to)


def check(src: str | Iterable[str], to: str) -> tuple[str, ...]:
    """The statuses in ``src`` (one or several), after checking that each may move to ``to``.

    Raises:
        PlanStateError: an unknown status, or a pair not in :data:`TRANSITIONS` (named, with what is allowed).
    """
    froms = (src,) if isinstance(src, str) else tuple(src)
    unknown = [s for s in (*froms, to) if s not in STATUSES]
    if unknown:
        raise PlanStateError(f"unknown plan status {unknown[0]!r}; plan statuses are {', '.join(sorted(STATUSES))}")
    if not froms:
        raise PlanStateError(f"a move to {to} needs the status it starts from")
    for s in froms:
        if not allowed(s, to):
            may = ", ".join(sorted(sources(to))) or "nothing (only a new plan is)"
            raise PlanStateError(f"a plan cannot go from {s} to {to}; {to} is reached from {may}")
    return froms


async def transition(db: _Database, plan_id: str, to: str, *, from_: str | Iterable[str],
                     unblocked: bool = False, **fields: Any) -> bool:
    """Move plan ``plan_id`` to ``to`` if its status is (one of) ``from_``: one guarded update, also setting
    ``updated_at`` and ``fields`` (only ``paused_reason``). ``unblocked``: only a plan with no
    ``blocked_reason`` moves. ``db``: the pool, or a connection inside the caller's transaction.

    Returns:
        True when the plan moved; False when it was not in ``from_`` (or blocked) when the update ran: a
        concurrent step won, or it never was; the caller says what that means.

    Raises:
        PlanStateError: a pair (``from_``, ``to``) not in :data:`TRANSITIONS`, or an unknown field; nothing is written.
    """
    froms = check(from_, to)
    unknown = set(fields) - _FIELDS
    if unknown:
        raise PlanStateError(f"a status change cannot set {', '.join(sorted(unknown))}; only "
                             f"{', '.join(sorted(_FIELDS))}")
    names = sorted(fields)
    sets = "".join(f", {name}=${i}" for i, name in enumerate(names, start=4))
    query = (f"UPDATE plans SET status=$2, updated_at=now(){sets} WHERE id=$1 AND status = ANY($3::text[])"
             + (" AND blocked_reason IS NULL" if unblocked else "") + " RETURNING id")
    return await db.fetchval(query, plan_id, to, list(froms), *(fields[n] for n in names)) is not None


async def start_run(db: _Database, plan_id: str) -> bool:
    """approved → running: this executor claims the plan (False: another did, or it is not approved)."""
    return await transition(db, plan_id, "running", from_="approved")


async def finish_run(db: _Database, plan_id: str, status: str) -> bool:
    """running → ``status`` (succeeded or failed): the run's outcome recorded (False: it was recorded already).

    Raises:
        PlanStateError: ``status`` is not an end of a run.
    """
    return await transition(db, plan_id, status, from_="running")


async def expire(db: _Database, plan_id: str) -> bool:
    """approved or paused → expired: the approval outlived ``approvals.ttl`` (False: it was in neither)."""
    return await transition(db, plan_id, "expired", from_=("approved", "paused"))
