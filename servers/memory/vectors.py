"""Scoped vector memory in ChromaDB collections ``conversations``, ``codebase`` and ``documentation``.

Every record carries a scope: ``session``, ``agent``, ``user`` or ``role`` (private
to that session, agent, user or role: the record stores which) or ``shared``
(every agent may read it). A recall only ever matches shared records and the
caller's own private ones, so one session never sees another's memories.

Each collection records the embedding model and dimension it was built with;
another embedder is refused with :class:`~shared.errors.EmbeddingMismatch`.
A new memory whose cosine similarity to an existing one of the same scope and
owner reaches ``memory.dedup_threshold`` updates that one instead of adding.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from chiffon.servers.memory.embedders import Embedder
from chiffon.shared.config import MemorySettings
from chiffon.shared.errors import EmbeddingMismatch, InvalidInput, ServiceUnavailable

COLLECTIONS = ("conversations", "codebase", "documentation")
SCOPES = ("session", "agent", "user", "role", "shared")
OWNER_FIELD = {"session": "session_id", "agent": "agent", "user": "user_id", "role": "role"}
FILTER_FIELDS = ("source", "kind", "path", "language", "agent", "role", "session_id", "user_id", "plan_id")
MAX_K = 50
OVERFETCH = 4  # unfiltered candidates per requested hit before falling back to a filtered search

T = TypeVar("T")
Scope = Literal["session", "agent", "user", "role", "shared"]


class Identity(BaseModel):
    """Who is asking: decides which private memories are visible."""

    session_id: str | None = None
    agent: str | None = None
    user_id: str | None = None
    role: str | None = None

    def owner(self, scope: str) -> str | None:
        """The id a record of ``scope`` is owned by (None for shared)."""
        return None if scope == "shared" else getattr(self, OWNER_FIELD[scope])


class Remembered(BaseModel):
    """Outcome of remember."""

    id: str
    collection: str
    action: Literal["added", "updated"] = Field(description="updated: a near-duplicate existed and was refreshed.")
    similarity: float | None = Field(description="Cosine similarity to the record updated, if any.")


class Hit(BaseModel):
    """One recalled record."""

    id: str
    collection: str
    score: float = Field(description="Cosine similarity in [-1, 1].")
    text: str
    scope: str
    source: str | None
    metadata: dict[str, Any]


def open_client(settings_home: Path, url: str | None) -> Any:
    """A Chroma client: ``HttpClient`` for ``url``, else ``PersistentClient`` in ``<home>/chroma``."""
    import chromadb

    config = chromadb.Settings(anonymized_telemetry=False)
    if url:
        from urllib.parse import urlparse

        parsed = urlparse(url)
        return chromadb.HttpClient(host=parsed.hostname or "127.0.0.1", port=parsed.port or 8000,
                                   ssl=parsed.scheme == "https", settings=config)
    path = settings_home / "chroma"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # chroma.sqlite3 holds every memory: owner only (attack 6)
    client = chromadb.PersistentClient(path=str(path), settings=config)
    for made in path.rglob("*"):  # made 0644 where no runtime set the umask (make_private): owner only
        if not made.is_symlink() and made.stat().st_mode & 0o077:
            made.chmod(made.stat().st_mode & 0o700)
    return client


class LazyClient:
    """A Chroma client opened on its first call, in the thread that makes it.

    Opening the embedded store costs about half a second (SQLite, HNSW segments); a server that only
    lists its tools, or answers a plan, never pays it. ``client.get_collection(...)`` evaluated on the
    event loop returns a stand-in; the open happens inside ``asyncio.to_thread`` with the call.
    """

    def __init__(self, opener: Callable[[], Any]) -> None:
        self._opener = opener
        self._client: Any = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._opener()
            return self._client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return getattr(self._open(), name)(*args, **kwargs)

        return call


def _validate_text(text: str, max_chars: int, field: str = "text") -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(field, "is empty")
    if len(text) > max_chars:
        raise InvalidInput(field, f"{len(text)} characters; at most {max_chars} (memory.max_text_chars)")
    return text


def _all(clauses: list[dict[str, Any]]) -> dict[str, Any] | None:
    return None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}


class VectorMemory:
    """Remember, recall, forget over Chroma with an :class:`Embedder`."""

    def __init__(self, client: Any, embedder: Embedder, settings: MemorySettings) -> None:
        self.client = client
        self.embedder = embedder
        self.settings = settings
        self._locks: dict[tuple[str, str, str | None], asyncio.Lock] = {}
        self._checked: dict[str, Any] = {}  # collections whose model was verified in this process

    async def collection(self, name: str, *, fresh: bool = False) -> Any:
        """The Chroma collection ``name``, created for this embedder on first use.

        Handles are cached per process; ``fresh`` looks the collection up again (long operations do, since
        another process may have dropped and re-created it).

        Raises:
            InvalidInput: not one of conversations, codebase, documentation.
            EmbeddingMismatch: the collection was built with another model or dimension.
        """
        if name not in COLLECTIONS:
            raise InvalidInput("collection", f"{name!r} is not one of {', '.join(COLLECTIONS)}")
        if name in self._checked and not fresh:
            return self._checked[name]
        dimension = await self.embedder.dimension()
        meta = {"hnsw:space": "cosine", "embedding_model": self.embedder.name, "dimension": dimension}
        try:
            col = await asyncio.to_thread(self.client.get_or_create_collection, name, metadata=meta,
                                          embedding_function=None)
        except Exception as exc:  # chromadb raises several unrelated types for an unreachable server
            raise ServiceUnavailable(f"ChromaDB: {type(exc).__name__}: {exc}") from exc
        have = col.metadata or {}
        if have.get("embedding_model") != self.embedder.name or int(have.get("dimension", dimension)) != dimension:
            raise EmbeddingMismatch(
                f"collection {name!r} holds {have.get('embedding_model')} vectors ({have.get('dimension')}-d) but the "
                f"embedder is {self.embedder.name} ({dimension}-d). Set memory.embedder back, or re-embed: "
                f"forget everything in {name!r} (forget with collection={name!r}, all=true) and remember/index again.")
        self._checked[name] = col
        return col

    async def _on(self, name: str, work: Callable[[Any], T]) -> T:
        """Run ``work(collection)`` in a worker thread; a handle made stale by another process (the
        collection was dropped and re-created there) is looked up again and ``work`` retried once."""
        from chromadb.errors import NotFoundError  # chromadb is loaded by now: a client exists

        col = await self.collection(name)
        try:
            return await asyncio.to_thread(work, col)
        except NotFoundError:
            self._checked.pop(name, None)
            return await asyncio.to_thread(work, await self.collection(name))

    def _owner_clause(self, scope: str, who: Identity, field: str = "scopes") -> dict[str, Any]:
        if scope == "shared":
            return {"scope": "shared"}
        owner = who.owner(scope)
        if not owner:
            raise InvalidInput(field, f"{scope} scope needs {OWNER_FIELD[scope]}")
        return {"$and": [{"scope": scope}, {OWNER_FIELD[scope]: owner}]}

    async def remember(self, text: str, scope: str, who: Identity, *, collection: str = "conversations",
                       metadata: dict[str, Any] | None = None) -> Remembered:
        """Store ``text`` in ``scope``; a near-duplicate of the same scope and owner is updated instead.

        Raises:
            InvalidInput: empty or over-long text, unknown scope or collection, missing owner id,
                metadata that is not flat str/int/float/bool.
            ServiceUnavailable: the embedder is down (nothing written).
        """
        _validate_text(text, self.settings.max_text_chars)
        if scope not in SCOPES:
            raise InvalidInput("scope", f"{scope!r} is not one of {', '.join(SCOPES)}")
        clause = self._owner_clause(scope, who, "scope")
        extra = dict(metadata or {})
        for key, value in extra.items():
            if not isinstance(value, (str, int, float, bool)):
                raise InvalidInput(f"metadata.{key}", "values must be text, numbers or booleans")
        await self.collection(collection)  # validates the name and the model before embedding
        vector = (await self.embedder.embed([text]))[0].tolist()
        now = datetime.now(UTC).isoformat()
        record = {**extra, "scope": scope, "created_at": now, "updated_at": now}
        if scope != "shared":
            record[OWNER_FIELD[scope]] = who.owner(scope)
        for field in ("session_id", "agent", "user_id", "role"):
            if getattr(who, field) and field not in record:
                record[field] = getattr(who, field)

        def upsert(col: Any) -> Remembered:
            found = col.query(query_embeddings=[vector], n_results=1, where=clause, include=["distances", "metadatas"])
            if found["ids"][0]:
                similarity = 1.0 - float(found["distances"][0][0])
                if similarity >= self.settings.dedup_threshold:
                    rid = found["ids"][0][0]
                    record["created_at"] = (found["metadatas"][0][0] or {}).get("created_at", now)
                    col.update(ids=[rid], embeddings=[vector], documents=[text], metadatas=[record])
                    return Remembered(id=rid, collection=collection, action="updated", similarity=round(similarity, 4))
            rid = f"mem-{uuid.uuid4().hex[:16]}"
            col.add(ids=[rid], embeddings=[vector], documents=[text], metadatas=[record])
            return Remembered(id=rid, collection=collection, action="added", similarity=None)

        async with self._locks.setdefault((collection, scope, who.owner(scope)), asyncio.Lock()):
            return await self._on(collection, upsert)

    def _scopes(self, scopes: Sequence[str] | None, who: Identity) -> list[str]:
        if scopes is None:  # everything this caller may see
            scopes = ["shared"] + [s for s in SCOPES if s != "shared" and who.owner(s)]
        if not scopes:
            raise InvalidInput("scopes", "give at least one scope")
        for s in scopes:
            if s not in SCOPES:
                raise InvalidInput("scopes", f"{s!r} is not one of {', '.join(SCOPES)}")
        return list(dict.fromkeys(scopes))

    def _visible(self, scopes: Sequence[str] | None, who: Identity) -> dict[str, Any]:
        """The Chroma ``where`` clause of what the caller may see."""
        clauses = [self._owner_clause(s, who) for s in self._scopes(scopes, who)]
        return clauses[0] if len(clauses) == 1 else {"$or": clauses}

    def _allowed(self, scopes: Sequence[str] | None, who: Identity) -> list[tuple[str, str | None]]:
        """The same rule as :meth:`_visible`, as (scope, owner) pairs for filtering in Python."""
        return [(s, who.owner(s)) for s in self._scopes(scopes, who)]

    @staticmethod
    def _filters(filters: dict[str, Any] | None) -> list[dict[str, Any]]:
        out = []
        for key, value in (filters or {}).items():
            if key not in FILTER_FIELDS:
                raise InvalidInput(f"filters.{key}", f"unknown field; filter on {', '.join(FILTER_FIELDS)}")
            if not isinstance(value, (str, int, float, bool)):
                raise InvalidInput(f"filters.{key}", "must be text, a number or a boolean")
            out.append({key: value})
        return out

    async def recall(self, query: str, who: Identity, *, scopes: Sequence[str] | None = None, k: int = 5,
                     filters: dict[str, Any] | None = None, collections: list[str] | None = None) -> list[Hit]:
        """The ``k`` most similar records the caller may see, best first, across ``collections``.

        Raises:
            InvalidInput: empty query, k outside 1..50, unknown scope, collection or filter field, a private
                scope without its owner id.
            EmbeddingMismatch, ServiceUnavailable: see :meth:`collection` and the embedder.
        """
        _validate_text(query, self.settings.max_text_chars, "query")
        if not 1 <= k <= MAX_K:
            raise InvalidInput("k", f"must be within 1..{MAX_K}, got {k}")
        where = _all([self._visible(scopes, who), *self._filters(filters)])
        allowed = self._allowed(scopes, who)
        names = list(dict.fromkeys(collections or COLLECTIONS))
        for n in names:
            await self.collection(n)
        vector = (await self.embedder.embed([query]))[0].tolist()
        include = ["documents", "metadatas", "distances"]

        def visible(meta: dict[str, Any]) -> bool:
            owner_ok = any(meta.get("scope") == scope and (owner is None or meta.get(OWNER_FIELD[scope]) == owner)
                           for scope, owner in allowed)
            return owner_ok and all(meta.get(key) == value for key, value in (filters or {}).items())

        def rows(found: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], float]]:
            return [(i, doc or "", dict(m or {}), float(d)) for i, doc, m, d in
                    zip(found["ids"][0], found["documents"][0], found["metadatas"][0], found["distances"][0], strict=True)]

        def nearest(col: Any) -> list[tuple[str, str, dict[str, Any], float]]:
            # Fast path: Chroma's metadata-filtered search scans far more than its plain ANN search, so
            # over-fetch without the filter and apply the same rule here; when too few of those are
            # visible (a mostly private collection), run the filtered search.
            fetch = k * OVERFETCH
            found = rows(col.query(query_embeddings=[vector], n_results=fetch, include=include))
            seen = [r for r in found if visible(r[2])]
            if len(seen) >= k or len(found) < fetch:
                return seen[:k]
            return rows(col.query(query_embeddings=[vector], n_results=k, where=where, include=include))

        async def search(name: str) -> list[Hit]:
            return [Hit(id=i, collection=name, score=round(1.0 - d, 4), text=doc, scope=m.get("scope", "?"),
                        source=m.get("source") or m.get("path"), metadata=m)
                    for i, doc, m, d in await self._on(name, nearest)]

        hits = [h for batch in await asyncio.gather(*(search(n) for n in names)) for h in batch]
        return sorted(hits, key=lambda h: h.score, reverse=True)[:k]

    async def forget(self, collection: str, *, ids: list[str] | None = None, filters: dict[str, Any] | None = None,
                     everything: bool = False) -> int:
        """Delete by ids, by filter, or everything in ``collection``; returns how many were deleted.

        Raises:
            InvalidInput: none or several of ids / filters / everything; unknown collection or filter field.
        """
        if sum(bool(x) for x in (ids, filters, everything)) != 1:
            raise InvalidInput("ids", "give exactly one of ids, filters or all=true")
        if collection not in COLLECTIONS:
            raise InvalidInput("collection", f"{collection!r} is not one of {', '.join(COLLECTIONS)}")
        if everything:  # also the way out of an embedding mismatch: no model check
            names = [c.name for c in await asyncio.to_thread(self.client.list_collections)]
            if collection not in names:
                return 0
            col = await asyncio.to_thread(self.client.get_collection, collection)
            count = await asyncio.to_thread(col.count)
            await asyncio.to_thread(self.client.delete_collection, collection)
            self._checked.pop(collection, None)
            return int(count)
        where = None if ids else _all(self._filters(filters))

        def delete(col: Any) -> int:
            found = col.get(ids=list(ids), include=[]) if ids else col.get(where=where, include=[])
            if found["ids"]:
                col.delete(ids=found["ids"])
            return len(found["ids"])

        return await self._on(collection, delete)

    async def collections(self) -> list[dict[str, Any]]:
        """Each collection: count, embedding model, dimension, last index time (null until indexed)."""
        existing = {c.name for c in await asyncio.to_thread(self.client.list_collections)}
        out = []
        for name in COLLECTIONS:
            if name not in existing:
                out.append({"name": name, "count": 0, "embedding_model": None, "dimension": None, "last_index": None})
                continue
            col = await asyncio.to_thread(self.client.get_collection, name)
            meta = col.metadata or {}
            out.append({"name": name, "count": await asyncio.to_thread(col.count),
                        "embedding_model": meta.get("embedding_model"), "dimension": meta.get("dimension"),
                        "last_index": meta.get("last_index")})
        return out
