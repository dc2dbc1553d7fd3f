"""chiffon backup / restore: a round trip through real pg_dump, pg_restore, Chroma and git gives the same state."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from chiffon.orchestrator.backup import prune
from chiffon.servers.memory import history
from chiffon.servers.memory.service import open_memory
from chiffon.servers.memory.vectors import Identity
from chiffon.shared.config import load_settings
from chiffon.shared.queue import TaskQueue
from chiffon.shared.runtime import open_runtime, stop_embedded

CHIFFON = str(Path(sys.executable).parent / "chiffon")


def chiffon(home: Path, *args: str, chroma_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHIFFON_HOME": str(home), **({"CHIFFON_CHROMA_URL": chroma_url} if chroma_url else {})}
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
            "tasks": [dict(r) for r in await pool.fetch("SELECT id, role, goal FROM queue_tasks ORDER BY id")],
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

    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    with (tampered / "postgres.dump").open("ab") as dump:
        dump.write(b"\0")
    refused = chiffon(target, "restore", str(tampered), "--key", str(source / "keys" / "backup.key"))
    assert refused.returncode == 2 and "postgres.dump" in refused.stderr and "SHA-256 does not match" in refused.stderr
    assert not any((target / d).exists() for d in ("postgres", "chroma", "keys"))  # nothing changed
    assert not (target / "audit").exists() or not any((target / "audit").iterdir())
    unkeyed = chiffon(target, "restore", str(folder))  # a new home has no key: the old home's is needed
    assert unkeyed.returncode == 2 and "--key" in unkeyed.stderr

    restored = chiffon(target, "restore", str(folder), "--key", str(source / "keys" / "backup.key"))
    assert restored.returncode == 0, restored.stderr
    assert (target / "keys" / "backup.key").read_bytes() == (source / "keys" / "backup.key").read_bytes()
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


def test_prune_keeps_a_day_of_backups_then_one_a_day_and_leaves_foreign_folders(tmp_path: Path) -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    ages_h = [0.5, 1, 23, 25, 26, 6 * 24 + 1, 6 * 24 + 2, 8 * 24, 30 * 24]
    for hours in ages_h:
        folder = tmp_path / (now - timedelta(hours=hours)).strftime("%Y%m%d-%H%M%S")
        folder.mkdir()
        (folder / "manifest.json").write_text("{}")
    (tmp_path / "notes").mkdir()
    (tmp_path / "20200101-000000").mkdir()  # a stamp-like folder that is no backup (no manifest)
    gone = prune(tmp_path, 7, now)
    kept = sorted(p.name for p in tmp_path.iterdir())
    stamp = [(now - timedelta(hours=h)).strftime("%Y%m%d-%H%M%S") for h in ages_h]
    # the last 24 h all stay (23 h is also the newest of Nov 21, so 25 h and 26 h go); Nov 16 keeps its newest
    # (145 h); 8 and 30 days are past keep_days
    assert sorted(gone) == sorted([stamp[3], stamp[4], stamp[6], stamp[7], stamp[8]])
    assert kept == sorted([stamp[0], stamp[1], stamp[2], stamp[5], "20200101-000000", "notes"])


async def remember_and_recall(home: Path, chroma_url: str | None, text: str | None) -> list[str]:
    """Remember ``text`` (when given) in ``home``'s memory, then recall what is there about the NAS."""
    settings = load_settings(home=home, chroma_url=chroma_url)
    async with open_runtime(settings) as rt, open_memory(rt) as memory:
        if text:
            await memory.vectors.remember(text, "shared", Identity())
        hits = await memory.vectors.recall("where do backups of the homelab go", Identity(), scopes=["shared"], k=3)
        return [h.text for h in hits]


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """A real Chroma server (the `chroma run` the chromadb wheel ships) on a free port; its URL."""
    from tests.llm.fakes import free_port

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "chroma"), "run", "--path", str(tmp_path / "srv"),
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/api/v2/heartbeat", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        server.kill()
        server.wait()


async def test_a_chroma_server_is_exported_through_its_api_and_restored(tmp_path: Path, chroma_server: str) -> None:
    import chromadb

    url = chroma_server
    homes = [tmp_path / name for name in ("source", "target", "embedded", "target2")]
    try:
        client = chromadb.HttpClient(host="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        fact = "Backups of the homelab go to the NAS every night."
        assert fact in await remember_and_recall(homes[0], url, fact)
        made = chiffon(homes[0], "backup", "--json", "--keep-days", "3", chroma_url=url)
        assert made.returncode == 0, made.stderr
        manifest = json.loads(made.stdout)
        assert manifest["parts"]["chroma"] == {"export": "chroma-export",
                                               "records": {"conversations": 1, "codebase": 0, "documentation": 0}}
        assert (Path(manifest["folder"]) / "chroma-export" / "conversations.npy").stat().st_size > 0

        client.delete_collection("conversations")  # the server's volume is lost
        assert "conversations" not in {c.name for c in client.list_collections()}
        restored = chiffon(homes[1], "restore", manifest["folder"], "--key", str(homes[0] / "keys" / "backup.key"),
                           chroma_url=url)
        assert restored.returncode == 0, restored.stderr
        assert fact in await remember_and_recall(homes[1], url, None)

        # an embedded home's backup restored where a Chroma server is configured goes through the API too
        other = "Backups of the homelab go to the cloud bucket on Sundays."
        assert other in await remember_and_recall(homes[2], None, other)
        embedded = json.loads(chiffon(homes[2], "backup", "--json").stdout)
        assert embedded["parts"]["chroma"] == {"dir": "chroma"}
        moved = chiffon(homes[3], "restore", embedded["folder"], "--key", str(homes[2] / "keys" / "backup.key"),
                        chroma_url=url)
        assert moved.returncode == 0, moved.stderr
        assert await remember_and_recall(homes[3], url, None) == [other]
    finally:
        for home in homes:
            await stop_embedded(load_settings(home=home))
