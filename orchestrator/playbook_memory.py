"""The IaC repo's units in vector memory, and meaning-based match scores.

Each unit (a playbook, or a role or task file its tags select, or a role no
playbook applies; :mod:`servers.ansible.units`) becomes one card in the
``documentation`` collection (scope ``shared``, ``kind: playbook``): its
description, name, service, tags, hosts and step names. Agents find the cards with ``recall``; ``plan_request``
uses their vectors to score a request by meaning as well as by words
(:func:`servers.ansible.matching.blend`).

Sync is incremental: a card is re-embedded only when its text changes (its
SHA-256 is stored with it) and removed when its unit is gone. Scoring reads
the stored vectors back, so a request costs one query embedding and a dot
product per unit: exact cosine, no approximate search.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from chiffon.servers.ansible.catalog import Catalog, Unit
from chiffon.shared.errors import ChiffonError

if TYPE_CHECKING:
    from chiffon.servers.memory.vectors import VectorMemory

log = logging.getLogger(__name__)

COLLECTION = "documentation"
KIND = "playbook"
MAX_TASK_NAMES = 40  # MiniLM reads 256 word pieces; the description comes first so it always counts


def card(unit: Unit) -> str:
    """The text embedded for ``unit``: what it does first, then what it touches."""
    what = {"playbook": "Playbook", "role": "Role", "tasks": "Task file", "unused-role": "Role (no playbook applies it)"}
    parts = [unit.description or unit.service, f"{what.get(unit.kind, 'Unit')} {unit.name}, service {unit.service}."]
    if unit.entry_tags:
        parts.append("Tags: " + ", ".join(unit.entry_tags) + ".")
    if unit.hosts:
        parts.append("Hosts: " + ", ".join(unit.hosts) + ".")
    names = [*(unit.playbook.play_names if unit.playbook and unit.kind == "playbook" else ()), *unit.steps]
    if names[:MAX_TASK_NAMES]:
        parts.append("Steps: " + "; ".join(names[:MAX_TASK_NAMES]) + ".")
    return " ".join(parts)


def _record_id(root: str, name: str) -> str:
    return f"playbook:{hashlib.sha1(root.encode()).hexdigest()[:12]}:{name}"


@dataclass(frozen=True)
class SyncReport:
    """What a catalog sync changed in ``documentation``."""

    added: int
    updated: int
    deleted: int
    unchanged: int


class PlaybookIndex:
    """Keeps the catalog's cards in ``documentation`` and scores requests against them."""

    def __init__(self, vectors: VectorMemory) -> None:
        self.vectors = vectors
        self._lock = asyncio.Lock()

    async def sync(self, catalog: Catalog) -> tuple[SyncReport, dict[str, np.ndarray]]:
        """Bring the cards of ``catalog`` up to date: embed new and changed ones, drop removed playbooks.

        Returns the report and each unit's vector (unit id -> float32 array). The stored cards are
        read on every call (one small ``get``), so edits by other processes are seen.

        Raises:
            EmbeddingMismatch: ``documentation`` was built with another embedding model.
            ServiceUnavailable: the embedder or ChromaDB is down (nothing is written).
        """
        root = str(catalog.root)
        cards = {}
        for unit in catalog.units:
            text = card(unit)
            cards[_record_id(root, unit.id)] = (unit.id, text, hashlib.sha256(text.encode()).hexdigest())
        async with self._lock:
            col = await self.vectors.collection(COLLECTION, fresh=True)
            stored = await asyncio.to_thread(col.get, where={"$and": [{"kind": KIND}, {"root": root}]},
                                             include=["metadatas", "embeddings"])
            have = {rid: ((meta or {}).get("card_sha256"), vec)
                    for rid, meta, vec in zip(stored["ids"], stored["metadatas"], stored["embeddings"], strict=True)}
            todo = [rid for rid, (_, _, digest) in cards.items() if have.get(rid, (None, None))[0] != digest]
            gone = [rid for rid in have if rid not in cards]
            fresh: Any = await self.vectors.embedder.embed([cards[rid][1] for rid in todo]) if todo else []
            if todo:
                now = datetime.now(UTC).isoformat()
                await asyncio.to_thread(
                    col.upsert, ids=todo, embeddings=[v.tolist() for v in fresh],
                    documents=[cards[rid][1] for rid in todo],
                    metadatas=[{"scope": "shared", "kind": KIND, "root": root, "path": cards[rid][0],
                                "source": f"{cards[rid][0]} (ansible)", "commit": catalog.commit or "",
                                "card_sha256": cards[rid][2], "created_at": now} for rid in todo])
            if gone:
                await asyncio.to_thread(col.delete, ids=gone)
        vectors = {cards[rid][0]: np.asarray(vec, dtype=np.float32) for rid, (_, vec) in have.items() if rid in cards}
        vectors.update({cards[rid][0]: np.asarray(vec, dtype=np.float32) for rid, vec in zip(todo, fresh, strict=True)})
        added = sum(rid not in have for rid in todo)
        report = SyncReport(added=added, updated=len(todo) - added, deleted=len(gone), unchanged=len(cards) - len(todo))
        if todo or gone:
            log.debug("playbook catalog of %s in %s: %s", root, COLLECTION, report)
        return report, vectors

    async def similarities(self, catalog: Catalog, request: str) -> dict[str, float]:
        """Cosine similarity of ``request`` to each unit's card: ``{unit id: [-1, 1]}``.

        Syncs the catalog first (no embedding when nothing changed). Raises as :meth:`sync`.
        """
        _, vectors = await self.sync(catalog)
        query = (await self.vectors.embedder.embed([request]))[0]
        return {name: float(vec @ query) for name, vec in vectors.items()}


async def index_in_background(index: PlaybookIndex, catalog_loader: Any, delay_s: float = 0.0) -> None:
    """Sync the catalog once, ``delay_s`` after server start, so agents can recall playbooks before any plan
    (best effort)."""
    await asyncio.sleep(delay_s)
    try:
        report, _ = await index.sync(await catalog_loader())
    except ChiffonError as exc:
        log.warning("playbook catalog not indexed into %s: %s", COLLECTION, exc)
        return
    log.info("playbook catalog in %s: %s", COLLECTION, report)
