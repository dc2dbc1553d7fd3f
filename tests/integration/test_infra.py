"""Real embedded PostgreSQL and Redis, and the git audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import pytest

from chiffon.shared.audit import AuditLog, parse_since
from chiffon.shared.bus import Bus
from chiffon.shared.errors import BusUnavailable, InvalidInput, StoreUnavailable
from chiffon.shared.redact import REDACTED
from chiffon.shared.runtime import Runtime
from chiffon.shared.store import Migration, Store, load_migrations


async def test_migrations_are_recorded_and_not_reapplied(rt: Runtime) -> None:
    versions = [r["version"] for r in await rt.store.pool.fetch("SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in load_migrations()] == list(range(1, len(versions) + 1))
    assert await rt.store.migrate() == []


async def test_a_new_migration_is_applied_once(rt: Runtime) -> None:
    extra = Migration(900, "test_table", "CREATE TABLE test_900 (x int)")
    assert await rt.store.migrate([extra]) == [900]
    assert await rt.store.migrate([extra]) == []
    await rt.store.pool.execute("DROP TABLE test_900; DELETE FROM schema_migrations WHERE version=900")


async def test_unreachable_postgres_names_the_url_without_the_password(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1") as info:
        await Store.open("postgresql://chiffon:hunter2@127.0.0.1:1/chiffon", tmp_path)
    assert "hunter2" not in str(info.value)


async def test_unreachable_redis_names_the_url(tmp_path: Path) -> None:
    with pytest.raises(BusUnavailable, match=r"redis://127\.0\.0\.1:1"):
        await Bus.open("redis://127.0.0.1:1/0", tmp_path)


async def test_consumer_group_delivers_once_and_ack_clears_pending(rt: Runtime) -> None:
    bus, stream, group = rt.bus, "test_stream_ack", "g"
    await bus.ensure_group(stream, group)
    await bus.ensure_group(stream, group)  # idempotent
    await bus.publish(stream, {"n": 1})
    first = await bus.read_group(stream, group, "w1", block_ms=100)
    assert [m.data for m in first] == [{"n": 1}]
    assert await bus.read_group(stream, group, "w2", block_ms=100) == []  # not delivered twice
    await bus.ack(stream, group, first[0].id)
    assert (await bus.redis.xpending(stream, group))["pending"] == 0


def test_audit_commit_has_structured_redacted_body(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit")
    sha = log.record("run", "plan-1 failed", {"plan_id": "plan-1", "status": "failed", "service": "redis",
                                               "extra_vars": {"db_password": "hunter2"}})
    commit = git.Repo(tmp_path / "audit").commit(sha)
    assert commit.summary == "plan-1 failed"
    assert "hunter2" not in commit.message and REDACTED in commit.message
    assert log.exists(sha) and not log.exists("0" * 40)
    (entry,) = log.query(plan_id="plan-1")
    assert entry.body["status"] == "failed" and entry.body["extra_vars"]["db_password"] == REDACTED


def test_audit_query_filters_failures_service_and_time(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit")
    log.record("run", "a ok", {"plan_id": "a", "status": "succeeded", "service": "redis"})
    log.record("run", "b failed", {"plan_id": "b", "status": "failed", "service": "uptime-kuma"})
    log.record("plan", "c planned", {"plan_id": "c", "service": "uptime-kuma"})
    assert [e.body["plan_id"] for e in log.query(failed=True)] == ["b"]
    assert [e.body["plan_id"] for e in log.query(service="Uptime-Kuma")] == ["c", "b"]
    assert log.query(since=datetime.now(UTC) + timedelta(minutes=1)) == []


def test_since_accepts_relative_and_iso_forms() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert parse_since("7d", now=now) == now - timedelta(days=7)
    assert parse_since("2026-11-01").date().isoformat() == "2026-11-01"
    with pytest.raises(InvalidInput, match="since"):
        parse_since("last tuesday")
