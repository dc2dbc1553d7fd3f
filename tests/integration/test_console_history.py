"""The console's run history on the session's real PostgreSQL: the runs table's filters and its search over
requests (parameterised, with LIKE wildcards escaped), the state of a row, and a run followed live."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from chiffon.orchestrator.console import history
from chiffon.orchestrator.console.history import RunFilter, run_rows
from chiffon.servers.ansible import execution, plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.errors import InvalidInput
from chiffon.shared.runtime import Runtime


@dataclass
class Made:
    token: str
    echo: plans.Plan  # ran, achieved, on ai, approved by alice
    broken: plans.Plan  # ran, failed, on east, approved by bob
    queued: plans.Plan  # approved, not run


async def _plan(svc: AnsibleService, playbook: str, request: str, approver: str | None, **kw) -> plans.Plan:  # type: ignore[no-untyped-def]
    plan = await plans.create_plan(svc.rt, await svc.catalog(), playbook, request=request, **kw)
    if approver:
        await plans.decide(svc.rt, plan.id, "approved", approver=approver, channel="console")
    return plan


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def made(rt: Runtime, repo: Path) -> AsyncIterator[Made]:
    """Three approved plans whose requests carry one token: two ran (achieved, failed), one is queued."""
    svc = AnsibleService(rt, repo)
    token = f"hist{secrets.token_hex(4)}"
    echo = await _plan(svc, "echo-message.yml", f"echo 100% of {token} on ai", "alice (console)",
                       extra_vars={"message": "history"})
    broken = await _plan(svc, "break-things.yml", f"break east for {token}", "bob (console)")
    queued = await _plan(svc, "echo-message.yml", f"later {token}_x", "alice (console)")
    await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", request=f"never approved {token}")
    for plan in (echo, broken):
        await execution.execute(rt, await svc.catalog(), plan.id)
    yield Made(token, echo, broken, queued)


async def ids(rt: Runtime, **filters: str) -> set[str]:
    return {r.plan_id for r in await run_rows(rt, RunFilter(**filters))}


async def test_search_finds_runs_by_the_words_of_their_request(rt: Runtime, made: Made) -> None:
    assert await ids(rt, search=made.token) == {made.echo.id, made.broken.id, made.queued.id}  # never-approved: no
    assert await ids(rt, search=f"BREAK EAST FOR {made.token}") == {made.broken.id}  # case-insensitive


async def test_each_row_reads_its_state_outcome_ansible_status_approver_and_duration(rt: Runtime, made: Made) -> None:
    rows = {r.plan_id: r for r in await run_rows(rt, RunFilter(search=made.token))}
    echo, broken, queued = rows[made.echo.id], rows[made.broken.id], rows[made.queued.id]
    assert (echo.state, echo.ansible, echo.approver, echo.hosts) == ("achieved", "succeeded", "alice (console)", ["ai"])
    assert (broken.state, broken.ansible, broken.hosts) == ("failed", "failed", ["east"])
    assert (queued.state, queued.ansible, queued.run_id, queued.duration_s) == ("queued", None, None, None)
    assert echo.duration_s is not None and echo.duration_s > 0
    cells = echo.cells()
    assert cells[:5] == [made.echo.id, "homelab-infra", "echo-message.yml", "ai", "achieved"]
    assert cells[-1].endswith(" s")


@pytest.mark.parametrize(("filters", "expected"), [
    ({"outcome": "failed"}, {"broken"}),
    ({"outcome": "achieved"}, {"echo"}),
    ({"outcome": "queued"}, {"queued"}),
    ({"host": "east"}, {"broken"}),
    ({"host": "ai"}, {"echo", "queued"}),
    ({"approver": "BOB"}, {"broken"}),
    ({"playbook": "break"}, {"broken"}),
    ({"repo": "homelab-infra"}, {"echo", "broken", "queued"}),
    ({"repo": "no-such-repo"}, set()),
    ({"since": "1h"}, {"echo", "broken", "queued"}),
    ({"until": "2000-01-01"}, set()),
])
async def test_each_filter_narrows_the_table(rt: Runtime, made: Made, filters: dict[str, str],
                                             expected: set[str]) -> None:
    names = {made.echo.id: "echo", made.broken.id: "broken", made.queued.id: "queued"}
    found = await ids(rt, search=made.token, **filters)
    assert {names[i] for i in found} == expected


async def test_like_wildcards_in_a_filter_match_themselves(rt: Runtime, made: Made) -> None:
    assert history.like("100%_a\\b") == "%100\\%\\_a\\\\b%"
    assert await ids(rt, search=f"100% of {made.token}") == {made.echo.id}  # a literal percent sign
    percent = await run_rows(rt, RunFilter(search="%"))
    assert made.echo.id in {r.plan_id for r in percent} and all("%" in (r.request or "") for r in percent)
    assert made.broken.id not in {r.plan_id for r in percent}  # '%' is not "everything"
    assert await ids(rt, search=f"{made.token}_x") == {made.queued.id}
    assert await ids(rt, search=f"{made.token}_") == {made.queued.id}  # '_' is one underscore, not any character
    assert await ids(rt, search=f"{made.token[:-1]}_") == set()  # as a wildcard it would match all three
    assert await ids(rt, search=f"later {made.token}%") == set()  # as a wildcard it would match the queued one


async def test_sql_in_a_filter_is_data_never_sql(rt: Runtime, made: Made) -> None:
    attacks = ["'; DROP TABLE runs; --", "x' OR '1'='1", "\\'; DELETE FROM plans; --", "ai' OR 1=1 --"]
    for attack in attacks:
        for name in ("search", "repo", "playbook", "host", "approver"):
            assert await ids(rt, **{name: attack}) == set(), (name, attack)
    assert await rt.store.pool.fetchval("SELECT count(*) FROM runs WHERE plan_id = $1", made.echo.id) == 1
    assert await ids(rt, search=made.token, host="ai' OR '1'='1") == set()


@pytest.mark.parametrize(("filters", "field"), [
    ({"outcome": "succeeded'; --"}, "outcome"), ({"since": "last tuesday"}, "since"),
    ({"until": "soon"}, "until"), ({"search": "x" * 201}, "search"),
])
async def test_a_bad_filter_is_refused_naming_the_field(rt: Runtime, filters: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        await run_rows(rt, RunFilter(**filters))
    assert err.value.field == field


async def test_following_an_ended_run_reads_nothing_more(rt: Runtime, made: Made) -> None:
    first = await history.follow(rt, made.echo.id)
    assert first.done and first.state == "achieved" and first.run is not None
    assert any(e["task"] == "Write the message" and e["changed"] for e in first.events)
    assert first.seq == first.events[-1]["seq"]
    assert await history.follow(rt, made.echo.id, first) is first  # no query once it ended
    queued = await history.follow(rt, made.queued.id)
    assert (queued.state, queued.done, queued.events) == ("queued", False, [])


async def test_a_followed_run_reads_only_new_events(rt: Runtime, made: Made) -> None:
    whole = await history.follow(rt, made.broken.id)
    assert whole.state == "failed" and len(whole.events) >= 2
    partial = history.Followed(plan=whole.plan, state="running", decision=whole.decision, run=whole.run,
                               events=whole.events[:1], seq=whole.events[0]["seq"])
    caught_up = await history.follow(rt, made.broken.id, partial)
    assert [e["seq"] for e in caught_up.events] == [e["seq"] for e in whole.events]  # each once, in order
    assert caught_up.done and caught_up.state == "failed"
