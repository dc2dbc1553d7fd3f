"""The plan state machine's table, checked without a database: every pair it refuses, every pair it allows."""

from __future__ import annotations

import itertools

import pytest

from chiffon.servers.ansible import plan_states
from chiffon.servers.ansible.plan_states import FINAL, STATUSES, TRANSITIONS
from chiffon.shared.errors import PlanStateError

ALL_PAIRS = sorted(itertools.product(STATUSES, STATUSES))
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]


def test_the_statuses_are_the_stored_ones() -> None:
    assert STATUSES == {"pending_approval", "approved", "paused", "rejected", "running", "succeeded", "failed",
                        "expired"}


def test_the_allowed_transitions_are_exactly_the_documented_table() -> None:
    table = {tuple(line.split()[:2]) for line in (plan_states.__doc__ or "").splitlines()
             if line.split()[:1] and line.split()[0] in STATUSES}
    assert table == TRANSITIONS


def test_rejected_expired_succeeded_and_failed_are_final() -> None:
    assert FINAL == {"rejected", "expired", "succeeded", "failed"}


@pytest.mark.parametrize(("src", "to"), FORBIDDEN, ids=[f"{a}->{b}" for a, b in FORBIDDEN])
def test_a_forbidden_transition_is_refused_naming_both_statuses(src: str, to: str) -> None:
    with pytest.raises(PlanStateError, match=f"cannot go from {src} to {to}"):
        plan_states.check(src, to)
    assert not plan_states.allowed(src, to)


@pytest.mark.parametrize(("src", "to"), sorted(TRANSITIONS), ids=[f"{a}->{b}" for a, b in sorted(TRANSITIONS)])
def test_an_allowed_transition_passes_the_guard(src: str, to: str) -> None:
    assert plan_states.check(src, to) == (src,)


def test_one_forbidden_source_among_several_refuses_the_move() -> None:
    with pytest.raises(PlanStateError, match="cannot go from running to expired"):
        plan_states.check(("approved", "running"), "expired")


def test_an_unknown_status_is_refused_with_the_known_ones() -> None:
    with pytest.raises(PlanStateError, match="unknown plan status 'done'.*pending_approval"):
        plan_states.check("running", "done")


def test_a_new_plan_is_the_only_way_into_pending_approval() -> None:
    assert plan_states.sources("pending_approval") == frozenset()
