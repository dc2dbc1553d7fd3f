"""Index a directory (an IaC repo, a codebase, docs) into a vector collection, incrementally.

Files come from ``git ls-files`` when the directory is a git work tree (so
``.gitignore`` is honoured), else from a walk that skips VCS, virtualenv and
``node_modules`` folders. Each file is identified by its git blob hash
(``sha1("blob <size>\\0" + bytes)``, the same id ``git hash-object`` prints), so a
re-index embeds only files whose hash changed and drops chunks of files that
are gone. Binary files (a NUL byte in the first 8 KiB) and files over
``MAX_FILE_BYTES`` are skipped and reported.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from chiffon.servers.memory.chunking import Chunk, chunk_file, language_of
from chiffon.servers.memory.vectors import VectorMemory
from chiffon.shared.errors import InvalidInput, PathOutsideRepo

MAX_FILE_BYTES = 1_000_000
EMBED_BATCH = 64
_SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".tox"}

Progress = Callable[[int, int, str], Awaitable[None]]


class IndexReport(BaseModel):
    """What an index run did."""

    root: str
    collection: str
    files_seen: int
    files_indexed: int = Field(description="New or changed files embedded this run.")
    files_unchanged: int
    files_deleted: int = Field(description="Files gone since the last run; their chunks were dropped.")
    chunks_added: int
    chunks_deleted: int
    skipped: list[str] = Field(description="'path: why' for binary, huge or unreadable files.")
    seconds: float


def blob_hash(data: bytes) -> str:
    """Git's blob id of ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def resolve_root(path: str | Path, allowed: list[Path]) -> Path:
    """``path`` as an absolute directory inside one of ``allowed``.

    Raises:
        InvalidInput: not a directory.
        PathOutsideRepo: outside every allowed root (symlinks resolved).
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise InvalidInput("path", f"{root} is not a directory")
    if not any(root == a or a in root.parents for a in (p.expanduser().resolve() for p in allowed)):
        raise PathOutsideRepo("path", f"{root} is outside the allowed roots ({', '.join(map(str, allowed))}); "
                                      "add it to memory.index_roots")
    return root


def list_files(root: Path) -> list[str]:
    """Relative paths of the indexable files under ``root``, sorted."""
    try:
        out = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True, timeout=60).stdout.decode()
        names = [n for n in out.split("\0") if n]
    except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired):
        names = [str(p.relative_to(root)) for p in root.rglob("*")
                 if p.is_file() and not _SKIP_DIRS.intersection(p.relative_to(root).parts)]
    return sorted(n for n in names if language_of(Path(n)) and (root / n).is_file())


def _read(root: Path, names: list[str]) -> tuple[dict[str, tuple[str, str]], list[str]]:
    files, skipped = {}, []
    for name in names:
        path = root / name
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                skipped.append(f"{name}: {size} bytes > {MAX_FILE_BYTES}")
                continue
            data = path.read_bytes()
        except OSError as exc:
            skipped.append(f"{name}: {exc.strerror or exc}")
            continue
        if b"\0" in data[:8192]:
            skipped.append(f"{name}: binary")
            continue
        try:
            files[name] = (blob_hash(data), data.decode("utf-8"))
        except UnicodeDecodeError:
            skipped.append(f"{name}: not UTF-8 text")
    return files, skipped


async def index_directory(memory: VectorMemory, path: str | Path, collection: str, allowed: list[Path],
                          on_progress: Progress | None = None) -> IndexReport:
    """Index ``path`` into ``collection`` (codebase or documentation), embedding only what changed.

    Raises:
        InvalidInput, PathOutsideRepo: see :func:`resolve_root`; collection not codebase/documentation.
        EmbeddingMismatch, ServiceUnavailable: the collection's model differs, or the embedder is down
            (chunks of a file are replaced only after its new vectors exist, so nothing is half-written).
    """
    if collection not in ("codebase", "documentation"):
        raise InvalidInput("collection", "index into codebase or documentation")
    started = time.perf_counter()
    root = resolve_root(path, allowed)
    col = await memory.collection(collection, fresh=True)
    names = await asyncio.to_thread(list_files, root)
    files, skipped = await asyncio.to_thread(_read, root, names)
    existing = await asyncio.to_thread(col.get, where={"root": str(root)}, include=["metadatas"])
    indexed: dict[str, tuple[str, list[str]]] = {}
    for rid, meta in zip(existing["ids"], existing["metadatas"], strict=True):
        path_, blob = (meta or {}).get("path", ""), (meta or {}).get("blob", "")
        indexed.setdefault(path_, (blob, []))[1].append(rid)

    changed = [n for n, (blob, _) in files.items() if indexed.get(n, ("", []))[0] != blob]
    gone = [n for n in indexed if n not in files and n not in {s.split(":")[0] for s in skipped}]
    chunks: list[tuple[Chunk, str]] = [(c, files[n][0]) for n in changed for c in chunk_file(n, files[n][1])]
    total = len(chunks)
    vectors: list[list[float]] = []
    for start in range(0, total, EMBED_BATCH):
        batch = chunks[start:start + EMBED_BATCH]
        vectors.extend((await memory.embedder.embed([f"{c.title}\n{c.text}" for c, _ in batch])).tolist())
        if on_progress is not None:
            await on_progress(min(start + EMBED_BATCH, total), total, f"embedded {batch[-1][0].path}")

    stale = [rid for n in changed + gone for rid in indexed.get(n, ("", []))[1]]
    if stale:
        await asyncio.to_thread(col.delete, ids=stale)
    now = datetime.now(UTC).isoformat()
    for start in range(0, total, 1000):
        part = chunks[start:start + 1000]
        await asyncio.to_thread(
            col.add,
            ids=[f"{blob[:12]}:{c.path}:{c.start_line}-{c.end_line}:{i + start}" for i, (c, blob) in enumerate(part)],
            embeddings=vectors[start:start + 1000],
            documents=[c.text for c, _ in part],
            metadatas=[{"scope": "shared", "root": str(root), "path": c.path, "source": f"{c.path}:{c.start_line}",
                        "start_line": c.start_line, "end_line": c.end_line, "language": c.language,
                        "title": c.title, "blob": blob, "kind": "chunk", "created_at": now} for c, blob in part])
    col_meta: dict[str, Any] = dict(col.metadata or {})
    col_meta.pop("hnsw:space", None)  # the distance function cannot be modified, only set at creation
    col_meta["last_index"] = now
    await asyncio.to_thread(col.modify, metadata=col_meta)
    return IndexReport(root=str(root), collection=collection, files_seen=len(names), files_indexed=len(changed),
                       files_unchanged=len(files) - len(changed), files_deleted=len(gone), chunks_added=total,
                       chunks_deleted=len(stale), skipped=skipped, seconds=round(time.perf_counter() - started, 3))
