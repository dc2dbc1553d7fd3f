"""A plan's snapshot in PostgreSQL, so that a worker on another host runs what was approved.

:mod:`servers.ansible.snapshot` lays a snapshot out under the planning host's ``CHIFFON_HOME/snapshots``. A worker
on another host has its own ``CHIFFON_HOME``: without a copy it would refuse the run ("snapshot ... is missing"),
or need a shared filesystem. :func:`publish` stores the manifest (``snapshot_manifests``) and each file's bytes
once per SHA-256 (``snapshot_blobs``) when the plan is made; :func:`fetch` lays the snapshot out on the worker's
host when it lacks it. Nothing is trusted on the way: each object is written only when its bytes hash to the
manifest's SHA-256, and the run then verifies the laid-out tree against the plan's digest as it always does
(:func:`servers.ansible.snapshot.verified`), so a row changed in PostgreSQL refuses the run.

Files outside the repo that a snapshot pins (roles or collections paths, a vault password file) are never copied:
a worker's host must hold the same ones at the same paths, or the run is refused as changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import asyncpg

from chiffon.servers.ansible import snapshot
from chiffon.shared.errors import PlanStateError


def _read_manifest(store: Path, digest: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((store / digest / "manifest.json").read_text())
    return data


async def publish(pool: asyncpg.Pool, store: Path, digest: str) -> int:
    """Store snapshot ``digest`` (laid out in ``store``) in PostgreSQL; the bytes of a file already there are not
    sent again. Returns how many objects were new.

    Raises:
        OSError: the local snapshot is unreadable; asyncpg errors: PostgreSQL refused.
    """
    manifest = await asyncio.to_thread(_read_manifest, store, digest)
    inside = {sha: mode for name, mode, sha in manifest["files"] if not os.path.isabs(name)}
    # a row whose bytes no longer hash to its name (changed in PostgreSQL) counts as absent and is written again
    have = {r["sha256"] for r in await pool.fetch(
        "SELECT sha256 FROM snapshot_blobs WHERE sha256 = ANY($1::text[]) AND encode(sha256(content), 'hex') = sha256",
        list(inside))}
    new = [(sha, mode) for sha, mode in inside.items() if sha not in have]
    for sha, mode in new:
        content = await asyncio.to_thread(snapshot.blob_path(store, sha, mode).read_bytes)
        await pool.execute("INSERT INTO snapshot_blobs (sha256, content) VALUES ($1, $2) "
                           "ON CONFLICT (sha256) DO UPDATE SET content = EXCLUDED.content", sha, content)
    # a digest has one manifest: the one made here from the files is right, whatever the row held
    await pool.execute("INSERT INTO snapshot_manifests (digest, manifest) VALUES ($1, $2) ON CONFLICT (digest) "
                       "DO UPDATE SET manifest = EXCLUDED.manifest WHERE snapshot_manifests.manifest <> "
                       "EXCLUDED.manifest", digest, manifest)  # the pool's jsonb codec encodes it (shared/store.py)
    return len(new)


async def fetch(pool: asyncpg.Pool, store: Path, digest: str) -> bool:
    """Lay out snapshot ``digest`` in ``store`` from PostgreSQL when this host lacks it. Raises PlanStateError when
    the stored manifest does not hash to ``digest`` (changed in PostgreSQL). Returns False when
    PostgreSQL has no such snapshot, or not every object of it (an object whose bytes do not hash to its SHA-256
    is never written): the run then refuses the snapshot as missing."""
    if (store / digest / "manifest.json").is_file():
        return True
    row = await pool.fetchrow("SELECT manifest FROM snapshot_manifests WHERE digest = $1", digest)
    if row is None:
        return False
    manifest: dict[str, Any] = row["manifest"]
    if snapshot.digest_of([tuple(r) for r in manifest["files"]]) != digest:
        raise PlanStateError(f"snapshot {digest[:12]} in PostgreSQL does not match its digest: it was changed there "
                             "after approval; nothing ran. Plan again.")
    wanted = {sha: mode for name, mode, sha in manifest["files"] if not os.path.isabs(name)}
    missing = [sha for sha, mode in wanted.items() if not snapshot.blob_path(store, sha, mode).is_file()]
    for blob in await pool.fetch("SELECT sha256, content FROM snapshot_blobs WHERE sha256 = ANY($1::text[])",
                                 missing):
        content = bytes(blob["content"])
        if hashlib.sha256(content).hexdigest() == blob["sha256"]:
            await asyncio.to_thread(snapshot.put_blob, snapshot.blob_path(store, blob["sha256"],
                                                                          wanted[blob["sha256"]]), content)
    if not all(snapshot.blob_path(store, sha, mode).is_file() for sha, mode in wanted.items()):
        return False
    await asyncio.to_thread(snapshot.lay_out, store, manifest)
    return True
