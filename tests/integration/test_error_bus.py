"""The error bus on the session's real Redis: flood detection, correlation into incidents, escalation to the
inbox and an Apprise target (a receiver on 127.0.0.1), recovery resolving an incident."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from chiffon.orchestrator.incidents import Correlator, incident, incidents, keys_of
from chiffon.servers.tasks import inbox
from chiffon.shared import error_bus
from chiffon.shared.error_bus import ERRORS_STREAM, report_error, report_recovery
from chiffon.shared.errors import InvalidInput
from chiffon.shared.runtime import Runtime
from tests.fixtures.apprise_receiver import Receiver


async def events_of(rt: Runtime, source: str) -> list[dict[str, Any]]:
    return [m.data for m in await rt.bus.recent(ERRORS_STREAM, count=5000) if m.data["source"] == source]


async def test_ten_thousand_identical_errors_become_one_aggregated_event_without_blocking(rt: Runtime) -> None:
    source = f"flood-{secrets.token_hex(3)}"
    reporter = error_bus.attach(rt.bus, threshold=3, window_s=3600)  # one window, however slow the machine
    try:
        for i in range(10_000):
            report_error(source, "timeout", f"request {i} timed out after {i % 7}.5 s", "error")
        assert len(reporter._queue) <= 3  # reporting only queued: nothing waited on Redis
    finally:
        await error_bus.detach(reporter)  # closing the window sends the held-back count
    seen = await events_of(rt, source)
    aggregated = [e for e in seen if e["aggregated"]]
    assert len(seen) == 4 and len(aggregated) == 1
    assert aggregated[0]["count"] == 9_997 and sum(e["count"] for e in seen) == 10_000
    assert len({e["fingerprint"] for e in seen}) == 1  # numbers normalised away


async def test_a_failing_plan_and_its_host_form_one_incident(rt: Runtime) -> None:
    plan, host = f"plan-{secrets.token_hex(5)}", f"h-{secrets.token_hex(3)}"
    reporter = error_bus.attach(rt.bus)
    try:
        report_error("ansible", "run_failed", "Write the message failed: disk full", "error", {"plan": plan, "host": host})
        report_error("hostd", "engine_error", "whisper crashed", "warning", {"host": host})
    finally:
        await error_bus.detach(reporter)
    await Correlator(rt).catch_up()
    found = [i for i in await incidents(rt) if f"host:{host}" in i["keys"]]
    assert len(found) == 1
    one = found[0]
    assert set(one["keys"]) == {f"plan:{plan}", f"host:{host}"} and one["events"] == 2
    assert set(one["sources"]) == {"ansible", "hostd"} and one["severity"] == "error" and one["status"] == "open"
    detail = await incident(rt, one["id"])
    assert {e["error_type"] for e in detail["recent_events"]} >= {"run_failed", "engine_error"}


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server on 127.0.0.1 that keeps what Apprise's json:// posts to it: its URL and what came."""
    found = Receiver()
    yield found.url, found.got
    found.close()


async def test_a_critical_incident_reaches_the_inbox_and_apprise(rt: Runtime, receiver: tuple[str, list[Any]],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, got = receiver
    monkeypatch.setattr(rt.settings.errors, "notify_urls", [SecretStr(url)])
    backend = f"ollama-{secrets.token_hex(3)}"
    reporter = error_bus.attach(rt.bus)
    try:
        report_error("llm", "all_tiers_down", "every tier failed", "critical", {"backend": backend})
    finally:
        await error_bus.detach(reporter)
    await Correlator(rt).catch_up()
    (found,) = [i for i in await incidents(rt, severity="critical") if f"backend:{backend}" in i["keys"]]
    assert found["escalated_at"] is not None
    notes = [m for m in await inbox.messages(rt) if m["kind"] == "incident" and found["id"] in json.dumps(m["body"])]
    assert len(notes) == 1 and "every tier failed" in notes[0]["title"]
    assert len(got) == 1 and "every tier failed" in got[0]["title"] and found["id"] in got[0]["message"]
    await Correlator(rt).catch_up()  # escalated once only
    assert len(got) == 1


async def test_a_recovery_resolves_the_incident_it_matches(rt: Runtime) -> None:
    backend = f"llama-{secrets.token_hex(3)}"
    reporter = error_bus.attach(rt.bus)
    try:
        report_error("llm", "breaker_open", "circuit open", "error", {"backend": backend})
        await reporter.drain()
        await Correlator(rt).catch_up()
        report_recovery("llm", f"{backend} answers again", {"backend": backend})
    finally:
        await error_bus.detach(reporter)
    await Correlator(rt).catch_up()
    (found,) = [i for i in await incidents(rt) if f"backend:{backend}" in i["keys"]]
    assert found["status"] == "resolved" and found["resolved_at"] is not None


def test_bad_reports_are_refused() -> None:
    with pytest.raises(InvalidInput, match="severity"):
        report_error("x", "y", "z", "fatal")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown key"):
        report_error("x", "y", "z", "error", {"user": "root"})
    assert keys_of({"source": "s", "error_type": "t", "context": {}}) == ["source:s:t"]


async def test_a_hosts_lapsed_heartbeat_opens_an_incident_that_its_return_resolves(rt: Runtime) -> None:
    import asyncio

    from chiffon.shared.hosts import HeartbeatWatch, publish_heartbeat

    host, never = f"lab-{secrets.token_hex(3)}", f"new-{secrets.token_hex(3)}"
    watch = HeartbeatWatch()
    reporter = error_bus.attach(rt.bus)

    async def check() -> frozenset[str]:  # what the resumer does each beat (orchestrator.runs.Resumer)
        changes = await watch.check(rt.bus, [host, never])
        error_bus.report_heartbeats(changes.stopped, changes.resumed)
        return changes.lost

    try:
        await publish_heartbeat(rt.bus, host, json.dumps({"status": "available"}), ttl_ms=300)
        assert await check() == set()  # beating; the other never beat: not "lost"
        await asyncio.sleep(0.6)  # the beat's TTL lapses: hostd stopped
        assert await check() == {host}
        assert await check() == {host}  # reported once, not every check
        await reporter.drain()
        await Correlator(rt).catch_up()
        (opened,) = [i for i in await incidents(rt) if f"host:{host}" in i["keys"]]
        assert opened["status"] == "open" and opened["sources"] == ["hostd"] and opened["events"] == 1
        await publish_heartbeat(rt.bus, host, json.dumps({"status": "available"}), ttl_ms=30_000)
        assert await check() == set()
    finally:
        await error_bus.detach(reporter)
    lost = [e for e in await events_of(rt, "hostd") if e["context"].get("host") == host]
    assert sorted(e["error_type"] for e in lost) == ["heartbeat_lost", "recovered"]  # once each
    await Correlator(rt).catch_up()
    (closed,) = [i for i in await incidents(rt) if f"host:{host}" in i["keys"]]
    assert closed["status"] == "resolved"
