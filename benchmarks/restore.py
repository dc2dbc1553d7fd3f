"""Restore drill: how long a backup and a restore take, and how much data a failure right after a backup loses.

It fills one CHIFFON_HOME (embedded PostgreSQL, ChromaDB, audit repo) with 1,000 plans and their runs, 10,000
chat messages in 100 sessions, 20,000 memory chunks (real all-MiniLM-L6-v2 embeddings, in the ``codebase``
collection) and 1,000 audit records. Then, per round:

1. ``chiffon backup --json`` while a writer keeps appending a chat message every 0.2 s;
2. the "failure" is the moment the backup command returns: the writer stops;
3. ``chiffon restore FOLDER`` into an empty home;
4. every count (plans, runs, sessions, messages, each Chroma collection), the audit log (every record's subject
   and commit, in order) and a recall query are compared with the source.

Figures (medians over the rounds, spread alongside):

* ``backup_s``: the ``chiffon backup`` command, start to exit;
* ``restore_s``: ``chiffon restore`` into the empty home, start to exit (the embedded PostgreSQL's first start
  included): the recovery time once a backup is at hand;
* ``rpo_s``: from the failure back to the newest message the restored home holds, i.e. what the drill lost.
  With backups on ``backup.schedule`` (every 30 min, the timer up to 60 s late) a failure just before the
  next backup loses up to ``1860 + rpo_s``: that is ``worst_rpo_s``;
* ``verified``: every round's comparison held.

Issue 19's target: recovery and data loss under an hour each.

    uv run --group test python benchmarks/restore.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.servers.memory import history  # noqa: E402
from chiffon.servers.memory.service import open_memory  # noqa: E402
from chiffon.servers.memory.vectors import Identity  # noqa: E402
from chiffon.shared.config import load_settings  # noqa: E402
from chiffon.shared.runtime import open_runtime, stop_embedded  # noqa: E402

CHIFFON = str(Path(sys.executable).parent / "chiffon")
SIZES = {"plans": 1000, "messages": 10_000, "sessions": 100, "chunks": 20_000, "audit": 1000}
SCHEDULE_S = 1800.0 + 60.0  # backup.schedule's default (*:00/30) plus the timer's RandomizedDelaySec
TARGET_S = 3600.0
ROLES = ["jellyfin", "uptime-kuma", "pihole", "grafana", "postgres", "redis", "traefik", "homeassistant"]
QUERY = "which port does the grafana role publish"


def chunk(i: int) -> str:
    role = ROLES[i % len(ROLES)]
    return (f"roles/{role}/tasks/main.yml part {i}: the {role} role renders its compose file, publishes port "
            f"{3000 + i % 500} and mounts /srv/{role}/data{i % 37}; handler restarts {role} on change.")


async def fill(home: Path, scale: float) -> dict[str, int]:
    """Fill ``home`` with :data:`SIZES` times ``scale``; the sizes used."""
    n = {k: max(1, int(v * scale)) for k, v in SIZES.items()}
    PLANS, MESSAGES, SESSIONS, CHUNKS, AUDIT = n["plans"], n["messages"], n["sessions"], n["chunks"], n["audit"]
    settings = load_settings(home=home)
    async with open_runtime(settings) as rt, open_memory(rt) as memory:
        pool = rt.store.pool
        await pool.execute(
            "INSERT INTO plans (id, repo, playbook, inventory, risk, status) SELECT 'plan-' || g, '/srv/iac', "
            "'deploy-' || g % 40 || '.yml', 'inventories/prod.ini', 'low', 'succeeded' FROM generate_series(1, $1) g",
            PLANS)
        await pool.execute("INSERT INTO runs (id, plan_id, status) SELECT 'run-' || g, 'plan-' || g, 'succeeded' "
                           "FROM generate_series(1, $1) g", PLANS)
        await pool.execute("INSERT INTO chat_sessions (id) SELECT 's-' || g FROM generate_series(1, $1) g", SESSIONS)
        await pool.execute(
            "INSERT INTO chat_messages (session_id, role, content, at) SELECT 's-' || (g % $2 + 1), "
            "CASE WHEN g % 2 = 0 THEN 'user' ELSE 'assistant' END, 'message ' || g || ': deploy uptime kuma on "
            "east and add the portals', now() - make_interval(secs => $1 - g) FROM generate_series(1, $1) g",
            MESSAGES, SESSIONS)
        col = await memory.vectors.collection("codebase")
        now = datetime.now(UTC).isoformat()
        for start in range(0, CHUNKS, 128):
            texts = [chunk(i) for i in range(start, min(start + 128, CHUNKS))]
            vectors = await memory.vectors.embedder.embed(texts)
            await asyncio.to_thread(
                col.add, ids=[f"chunk-{start + j}" for j in range(len(texts))], documents=texts,
                embeddings=[v.tolist() for v in vectors],
                metadatas=[{"scope": "shared", "created_at": now, "updated_at": now,
                            "path": f"roles/{ROLES[(start + j) % len(ROLES)]}/tasks/main.yml"} for j in range(len(texts))])
            print(f"  {start + len(texts)}/{CHUNKS} chunks", file=sys.stderr, end="\r")
        print(file=sys.stderr)
        for i in range(AUDIT):
            await asyncio.to_thread(rt.audit.record, "run", f"run run-{i + 1} of plan-{i + 1}: succeeded",
                                    {"plan_id": f"plan-{i + 1}", "status": "succeeded"})
    # the servers stay up: pgserver keeps a handle per data dir in this process, which a stop would leave stale
    return n


async def snapshot(home: Path) -> dict[str, Any]:
    """What must survive: counts, the audit log and a recall, read through chiffon's own code."""
    settings = load_settings(home=home)
    async with open_runtime(settings) as rt, open_memory(rt) as memory:
        pool = rt.store.pool
        counts = {table: await pool.fetchval(f"SELECT count(*) FROM {table}")
                  for table in ("plans", "runs", "chat_sessions", "chat_messages", "approvals", "queue_tasks")}
        for name in ("codebase", "conversations"):
            col = await memory.vectors.collection(name)
            counts[f"chroma:{name}"] = await asyncio.to_thread(col.count)
        records = await asyncio.to_thread(rt.audit.query, limit=100_000)
        hits = await memory.vectors.recall(QUERY, Identity(), scopes=["shared"], k=3, collections=["codebase"])
        live = await pool.fetchval("SELECT count(*) FROM chat_sessions WHERE id='s-live'")
        return {"counts": counts, "audit": [(r.commit, r.subject) for r in records], "recall": [h.id for h in hits],
                "live": bool(live)}


async def newest_message(home: Path) -> datetime:
    settings = load_settings(home=home)
    async with open_runtime(settings) as rt:
        newest: datetime = await rt.store.pool.fetchval("SELECT max(at) FROM chat_messages WHERE session_id='s-live'")
    return newest


async def writer(home: Path, stop: asyncio.Event) -> int:
    """Append a chat message every 0.2 s until ``stop``; returns how many it wrote."""
    settings = load_settings(home=home)
    written = 0
    async with open_runtime(settings) as rt:
        while not stop.is_set():
            await history.append_message(rt.store, "s-live", "user", f"live message {written}")
            written += 1
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except TimeoutError:
                pass
    return written


async def one_round(source: Path, target: Path, before: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "CHIFFON_HOME": str(source), "CHIFFON_EMBEDDED__IDLE_STOP_S": "0"}
    stop = asyncio.Event()
    writing = asyncio.create_task(writer(source, stop))
    await asyncio.sleep(1.0)
    started = time.monotonic()
    made = await asyncio.to_thread(subprocess.run, [CHIFFON, "backup", "--json"], env=env, capture_output=True,
                                   text=True, timeout=3600)
    backup_s = time.monotonic() - started
    failed_at = datetime.now(UTC)  # the failure: right after the backup returned
    stop.set()
    written = await writing
    if made.returncode != 0:
        raise RuntimeError(f"backup failed: {made.stderr[-2000:]}")
    folder = json.loads(made.stdout)["folder"]
    started = time.monotonic()
    restored = await asyncio.to_thread(subprocess.run, [CHIFFON, "restore", folder],
                                       env={**env, "CHIFFON_HOME": str(target)}, capture_output=True, text=True,
                                       timeout=3600)
    restore_s = time.monotonic() - started
    if restored.returncode != 0:
        raise RuntimeError(f"restore failed: {restored.stderr[-2000:]}")
    after = await snapshot(target)
    rpo_s = (failed_at - await newest_message(target)).total_seconds()
    await stop_embedded(load_settings(home=target))
    live = after["counts"]["chat_messages"] - before["counts"]["chat_messages"]
    # the live writer adds its messages and its one session ("s-live") after `before` was read
    expected = {**before["counts"], "chat_messages": after["counts"]["chat_messages"],
                "chat_sessions": before["counts"]["chat_sessions"] + (0 if before["live"] else 1)}
    mismatched = sorted(k for k in expected if expected[k] != after["counts"].get(k))
    mismatched += [k for k in ("audit", "recall") if after[k] != before[k]]
    verified = not mismatched and 0 < live <= written
    return {"backup_s": round(backup_s, 2), "restore_s": round(restore_s, 2), "rpo_s": round(rpo_s, 2),
            "verified": verified, "mismatched": mismatched, "live_messages_written": written, "live_messages_restored": live}


def spread(rounds: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in rounds]
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="Data size factor (0.01 for a smoke run).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chiffon-bench-restore-") as tmp:
        source = Path(tmp) / "source"
        started = time.monotonic()
        sizes = await fill(source, args.scale)
        fill_s = time.monotonic() - started
        rounds = []
        try:
            for n in range(args.rounds):
                before = await snapshot(source)  # each round's writer adds messages to the source
                rounds.append(await one_round(source, Path(tmp) / f"target-{n}", before))
                print(f"round {n + 1}: {rounds[-1]}", file=sys.stderr)
        finally:
            await stop_embedded(load_settings(home=source))
        backup_s, restore_s, rpo_s = (spread(rounds, k) for k in ("backup_s", "restore_s", "rpo_s"))
        print(json.dumps({
            "backup_s": backup_s["median"], "restore_s": restore_s["median"], "rpo_s": rpo_s["median"],
            "worst_rpo_s": round(SCHEDULE_S + rpo_s["max"], 2), "verified": all(r["verified"] for r in rounds),
            "spread": {"backup_s": backup_s, "restore_s": restore_s, "rpo_s": rpo_s},
            "data": {"plans": sizes["plans"], "chat_messages": sizes["messages"], "memory_chunks": sizes["chunks"],
                     "audit_records": sizes["audit"]},
            "fill_s": round(fill_s, 1), "target_s": TARGET_S,
            "met": restore_s["max"] < TARGET_S and SCHEDULE_S + rpo_s["max"] < TARGET_S,
            "rounds": rounds,
        }))


if __name__ == "__main__":
    asyncio.run(main())
