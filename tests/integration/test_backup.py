"""chiffon backup / restore: a round trip through real pg_dump, pg_restore, Chroma and git gives the same state."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chiffon.orchestrator.backup import prune
from chiffon.servers.memory import history
from chiffon.servers.memory.service import open_memory
from chiffon.servers.memory.vectors import Identity
from chiffon.servers.tasks.queue import TaskQueue
from chiffon.shared.config import load_settings
from chiffon.shared.runtime import open_runtime, stop_embedded

CHIFFON = str(Path(sys.executable).parent / "chiffon")


def chiffon(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHIFFON_HOME": str(home)}
    return subprocess.run([CHIFFON, *args], env=env, capture_output=True, text=True, timeout=600)


async def snapshot(home: Path) -> dict[str, Any]:
    """Everything the round trip must keep, read through chiffon's own code."""
    settings = load_settings(home=home)
    async with open_runtime(settings) as rt, open_memory(rt) as memory:
        pool = rt.store.pool
        hits = await memory.vectors.recall("where do backups of the homelab go", Identity(session_id="s-backup"),
                                           scopes=["shared", "session"], k=3)
        return {
            "plans": [dict(r) for r in await pool.fetch("SELECT id, playbook, status FROM plans ORDER BY id")],
            "runs": [dict(r) for r in await pool.fetch("SELECT id, plan_id, status FROM runs ORDER BY id")],
            "chat": [m.content for m in await history.history(rt.store, "s-backup", 10)],
            "tasks": [dict(r) for r in await pool.fetch("SELECT id, role, goal FROM agent_tasks ORDER BY id")],
            "memories": sorted(h.text for h in hits),
            "audit": [e.subject for e in await asyncio.to_thread(rt.audit.query, limit=50)],
        }


async def test_backup_then_restore_gives_the_same_state_and_refuses_a_full_home(tmp_path: Path) -> None:
    source, occupied, target = tmp_path / "source", tmp_path / "occupied", tmp_path / "target"
    settings = load_settings(home=source)
    async with open_runtime(settings) as rt, open_memory(rt) as memory:
        await rt.store.pool.execute(
            "INSERT INTO plans (id, repo, playbook, inventory, risk, status) VALUES "
            "('plan-b1', '/srv/iac', 'deploy-redis.yml', 'inventories/local.ini', 'low', 'succeeded')")
        await rt.store.pool.execute("INSERT INTO runs (id, plan_id, status) VALUES ('run-b1', 'plan-b1', 'succeeded')")
        await history.append_message(rt.store, "s-backup", "user", "Deploy Redis on east")
        await memory.vectors.remember("Backups of the homelab go to the NAS every night.", "shared", Identity())
        await TaskQueue(rt).submit("noop", "a task to keep", kind="noop")
        await asyncio.to_thread(rt.audit.record, "plan", "plan plan-b1: deploy-redis.yml", {"plan_id": "plan-b1"})
    before = await snapshot(source)
    assert before["plans"] and before["runs"] and before["chat"] and before["tasks"] and before["audit"]
    assert any("NAS" in m for m in before["memories"])

    made = chiffon(source, "backup", "--json")
    assert made.returncode == 0, made.stderr
    manifest = json.loads(made.stdout)
    folder = Path(manifest["folder"])
    assert set(manifest["parts"]) == {"postgres", "chroma", "audit"} and (folder / "postgres.dump").stat().st_size > 0

    (occupied / "audit").mkdir(parents=True)
    (occupied / "audit" / "keep.txt").write_text("someone's state")
    refused = chiffon(occupied, "restore", str(folder))
    assert refused.returncode == 2 and "already holds audit" in refused.stderr and "--force" in refused.stderr
    assert (occupied / "audit" / "keep.txt").read_text() == "someone's state"

    restored = chiffon(target, "restore", str(folder))
    assert restored.returncode == 0, restored.stderr
    try:
        assert await snapshot(target) == before
        forced = chiffon(target, "restore", str(folder), "--force")
        assert forced.returncode == 0, forced.stderr
        saved = Path(forced.stdout.strip().rsplit("backed up in ", 1)[1])
        assert set(json.loads((saved / "manifest.json").read_text())["parts"]) == {"postgres", "chroma", "audit"}
        assert await snapshot(target) == before
    finally:
        for home in (source, target):
            await stop_embedded(load_settings(home=home))


def test_prune_keeps_seven_days_and_leaves_foreign_folders(tmp_path: Path) -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    for days in (1, 6, 8, 30):
        folder = tmp_path / (now - timedelta(days=days)).strftime("%Y%m%d-%H%M%S")
        folder.mkdir()
        (folder / "manifest.json").write_text("{}")
    (tmp_path / "notes").mkdir()
    gone = prune(tmp_path, 7, now)
    assert len(gone) == 2 and sorted(p.name for p in tmp_path.iterdir())[-1] == "notes"
    assert len(list(tmp_path.iterdir())) == 3
