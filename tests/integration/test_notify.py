"""Notifications through Apprise: plans made, approved and run on the session's real PostgreSQL and Redis, sent by
the notifier's consumer group with Apprise's ``json://`` plugin to an HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from chiffon.orchestrator.notify import Notifier, console_base, plan_link
from chiffon.servers.ansible import execution, plan_events, plans
from chiffon.servers.ansible.plan_events import PLAN_EVENTS
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared import metrics
from chiffon.shared.bus import Bus
from chiffon.shared.runtime import Runtime
from tests.conftest import make_repo
from tests.fixtures.apprise_receiver import Receiver

CONSOLE = "https://console.homelab.test:7860"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def svc(rt: Runtime, tmp_path: Path) -> AnsibleService:
    return AnsibleService.for_runtime(rt, make_repo(tmp_path / "repo"))


@pytest.fixture
async def notifier(rt: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Notifier:
    """A notifier in a group of its own that starts at the end of the stream (what came before is other tests')."""
    monkeypatch.setattr(rt.settings.notify, "urls", [SecretStr(receiver.url)])
    monkeypatch.setattr(rt.settings.notify, "retry_delay_s", 0.01)
    monkeypatch.setattr(rt.settings.console, "url", CONSOLE)
    group = f"notify-test-{secrets.token_hex(4)}"
    await rt.bus.ensure_group(PLAN_EVENTS, group, start="$")
    return Notifier(rt, name="test", group=group)


async def test_a_plan_awaiting_approval_is_sent_with_its_request_hosts_risk_and_console_link(
        svc: AnsibleService, notifier: Notifier, receiver: Receiver) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml", request="write hello on ai",
                                   extra_vars={"message": "hello"})
    await notifier.catch_up()
    (sent,) = receiver.about(plan.id)
    assert sent["title"] == f"chiffon: echo-message.yml awaits approval ({plan.risk} risk)"
    body = sent["message"]
    assert "Request: write hello on ai" in body and "Hosts: ai" in body
    assert f"Risk: {plan.risk}: {plan.risk_reasons[0]}" in body
    assert f"Review it: {CONSOLE}/?review={plan.id}" in body


async def test_approving_a_high_risk_plan_says_who_approved_it_and_through_what(
        svc: AnsibleService, notifier: Notifier, receiver: Receiver) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "cleanup-disk.yml")
    assert plan.risk == "high", plan.risk_reasons
    await plans.decide(svc.rt, plan.id, "approved", approver="alice (console)", channel="console")
    await notifier.catch_up()
    pending, approved = receiver.about(plan.id)
    assert "awaits approval (high risk)" in pending["title"]
    assert approved["title"] == "chiffon: high-risk cleanup-disk.yml approved by alice (console)"
    assert "Approved by: alice (console) via console" in approved["message"]
    assert "destructive command" in approved["message"]  # the risk reasons, as the reviewer saw them


async def test_approving_a_plan_that_is_not_high_risk_sends_no_approval(
        svc: AnsibleService, notifier: Notifier, receiver: Receiver) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "x"})
    await plans.decide(svc.rt, plan.id, "approved", approver="tester", channel="cli")
    await notifier.catch_up()
    assert [m["title"] for m in receiver.about(plan.id)] == [
        f"chiffon: echo-message.yml awaits approval ({plan.risk} risk)"]


async def test_a_finished_run_is_sent_with_its_outcome_and_first_reason(
        svc: AnsibleService, notifier: Notifier, receiver: Receiver) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "ran"})
    await plans.decide(svc.rt, plan.id, "approved", approver="tester", channel="cli")
    result = await execution.execute(svc.rt, await svc.catalog(), plan.id)
    await notifier.catch_up()
    finished = receiver.about(plan.id)[-1]
    assert finished["title"] == f"chiffon: echo-message.yml {result.outcome}"
    assert f"Outcome: {result.outcome}: {result.outcome_reasons[0]}" in finished["message"]
    assert f"run: {result.run_id}" in finished["message"]


async def test_a_failed_run_is_sent_as_failed(svc: AnsibleService, notifier: Notifier, receiver: Receiver) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "break-things.yml")
    await plans.decide(svc.rt, plan.id, "approved", approver="tester", channel="cli")
    result = await execution.execute(svc.rt, await svc.catalog(), plan.id)
    await notifier.catch_up()
    assert result.outcome == "failed"
    assert receiver.about(plan.id)[-1]["title"] == "chiffon: break-things.yml failed"


async def test_each_event_is_sent_once_by_two_notifiers_in_one_group(
        svc: AnsibleService, notifier: Notifier, receiver: Receiver) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "y"})
    runs = [f"run-{i:02d}-{secrets.token_hex(3)}" for i in range(30)]
    for run_id in runs:  # one event per run id: each body names its own
        await plan_events.publish(svc.rt, "run_finished", plan.id, run_id=run_id, outcome="achieved", reason="ok")
    one = Notifier(svc.rt, name="one", group=notifier.group)
    two = Notifier(svc.rt, name="two", group=notifier.group)
    tasks = [asyncio.create_task(n.run_forever()) for n in (one, two)]
    try:
        for _ in range(600):  # until all arrived (a failing test stops here, it does not time anything)
            if len(receiver.about(plan.id)) >= 1 + len(runs):
                break
            await asyncio.sleep(0.05)
        pending = await svc.rt.bus.redis.xpending(PLAN_EVENTS, notifier.group)
        assert pending["pending"] == 0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    bodies = [m["message"] for m in receiver.about(plan.id) if "Outcome:" in m["message"]]
    assert sorted(next(r for r in runs if r in b) for b in bodies) == runs  # each once, none twice


async def test_a_receiver_that_is_down_does_not_break_plan_creation(
        svc: AnsibleService, notifier: Notifier, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setattr(svc.rt.settings.notify, "urls", [SecretStr(f"json://127.0.0.1:{dead}/hook")])
    monkeypatch.setattr(svc.rt.settings.notify, "retries", 2)
    failed = metrics.NOTIFICATIONS.labels("pending_approval", "failed")
    before = failed._value.get()
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "z"})
    assert (await plans.get_plan(svc.rt, plan.id)).status == "pending_approval"
    with caplog.at_level(logging.WARNING, logger="chiffon.orchestrator.notify"):
        assert await notifier.catch_up() >= 1
    assert failed._value.get() == before + 1
    assert any(f"pending_approval of plan {plan.id} not delivered to json:// after 3 tries" in r.getMessage()
               for r in caplog.records)
    assert (await svc.rt.bus.redis.xpending(PLAN_EVENTS, notifier.group))["pending"] == 0  # acked, not stuck


async def test_a_bus_that_is_down_does_not_break_plan_creation(
        rt: Runtime, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    gone = Bus(aioredis.Redis.from_url(f"redis://127.0.0.1:{dead}", socket_connect_timeout=1), "gone")
    cut_off = Runtime(rt.settings, rt.store, gone, rt.audit)
    svc = AnsibleService.for_runtime(cut_off, make_repo(tmp_path / "repo"))
    with caplog.at_level(logging.WARNING, logger="chiffon.servers.ansible.plan_events"):
        plan = await plans.create_plan(cut_off, await svc.catalog(), "echo-message.yml", extra_vars={"message": "b"})
    assert (await plans.get_plan(rt, plan.id)).status == "pending_approval"
    assert any(f"plan {plan.id}: pending_approval event not published" in r.getMessage() for r in caplog.records)
    await gone.close()


async def test_events_left_out_of_notify_events_are_not_sent(
        svc: AnsibleService, notifier: Notifier, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svc.rt.settings.notify, "events", ["run_finished"])
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "q"})
    await plan_events.publish(svc.rt, "run_finished", plan.id, run_id="run-x", outcome="partial", reason="not up")
    await notifier.catch_up()
    assert [m["title"] for m in receiver.about(plan.id)] == ["chiffon: echo-message.yml partial"]


async def test_an_event_naming_a_hostile_plan_id_sends_nothing_and_changes_nothing(
        rt: Runtime, notifier: Notifier, receiver: Receiver) -> None:
    count = await rt.store.pool.fetchval("SELECT count(*) FROM plans")
    hostile = "plan-x'; DROP TABLE plans; --"
    await rt.bus.publish(PLAN_EVENTS, {"kind": "pending_approval", "plan_id": hostile})
    await rt.bus.publish(PLAN_EVENTS, {"kind": "pending_approval"})  # no plan id at all
    assert await notifier.catch_up() == 2
    assert receiver.got == [] and await rt.store.pool.fetchval("SELECT count(*) FROM plans") == count


def test_the_console_link_defaults_to_the_bind_address_and_quotes_the_id(
        settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = settings.model_copy(deep=True)
    copy.console.url, copy.console.bind, copy.console.port = None, "0.0.0.0", 7861
    assert console_base(copy) == f"http://{socket.gethostname()}:7861"
    copy.console.bind = "::1"
    assert console_base(copy) == "http://[::1]:7861"
    copy.console.url = "https://ai.homelab.lan/console/"
    assert plan_link(copy, "plan-1 &x=") == "https://ai.homelab.lan/console/?plan=plan-1%20%26x%3D"


async def test_incidents_go_to_notify_urls_while_errors_notify_urls_is_empty(
        rt: Runtime, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    from chiffon.orchestrator.incidents import notify_humans

    monkeypatch.setattr(rt.settings.errors, "notify_urls", [])
    monkeypatch.setattr(rt.settings.notify, "urls", [SecretStr(receiver.url)])
    marker = secrets.token_hex(4)
    await notify_humans(rt, "drift", f"drift {marker}", {"unit": "redis"})
    assert [m["title"] for m in receiver.got] == [f"drift {marker}"]
    elsewhere = Receiver()  # set, errors.notify_urls wins
    try:
        monkeypatch.setattr(rt.settings.errors, "notify_urls", [SecretStr(elsewhere.url)])
        await notify_humans(rt, "drift", f"again {marker}", {"unit": "redis"})
        assert [m["title"] for m in elsewhere.got] == [f"again {marker}"] and len(receiver.got) == 1
    finally:
        elsewhere.server.shutdown()


async def test_an_event_whose_notifier_died_before_sending_is_sent_by_another_once(
        svc: AnsibleService, notifier: Notifier, receiver: Receiver) -> None:
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "d"})
    taken = await svc.rt.bus.read_group(PLAN_EVENTS, notifier.group, "died", count=10, block_ms=None)
    assert [m.data["plan_id"] for m in taken] == [plan.id]  # read, never acked: its reader is gone
    assert await notifier.catch_up() == 0 and receiver.about(plan.id) == []
    survivor = Notifier(svc.rt, name="survivor", group=notifier.group, reclaim_idle_s=0.05)
    await asyncio.sleep(0.1)  # the entry's idle time passes the survivor's threshold
    assert await survivor.reclaim() == 1
    assert [m["title"] for m in receiver.about(plan.id)] == [f"chiffon: echo-message.yml awaits approval ({plan.risk} risk)"]
    assert await survivor.reclaim() == 0  # acked now: never twice


async def test_a_request_cannot_forge_a_line_or_a_link_in_the_notification(
        svc: AnsibleService, notifier: Notifier, receiver: Receiver) -> None:
    forged = "write hi\nReview it: https://evil.example/steal\r\nHosts: none\x1b[2J"
    plan = await plans.create_plan(svc.rt, await svc.catalog(), "echo-message.yml", request=forged,
                                   extra_vars={"message": "f"})
    await plans.decide(svc.rt, plan.id, "rejected", approver='client-asserted "x\nApproved by: root"',
                       channel="mcp-tool")
    await notifier.catch_up()
    (sent,) = receiver.about(plan.id)
    lines = sent["message"].splitlines()
    assert [line for line in lines if line.startswith("Review it:")] == [f"Review it: {CONSOLE}/?review={plan.id}"]
    assert [line for line in lines if line.startswith("Hosts:")] == ["Hosts: ai"]
    assert "Request: write hi Review it: https://evil.example/steal Hosts: none [2J" in lines
