"""What the memory tools need: the runtime's store and the vector memory, opened once."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chiffon.servers.memory.embedders import make_embedder
from chiffon.servers.memory.vectors import LazyClient, VectorMemory, open_client


@dataclass
class MemoryService:
    """PostgreSQL store (chat history) + vector memory (Chroma)."""

    rt: Any  # shared.runtime.Runtime
    vectors: VectorMemory

    @property
    def index_roots(self) -> list[Path]:
        """Where index_repo may read: ``memory.index_roots`` plus the configured IaC repo."""
        roots = list(self.rt.settings.memory.index_roots)
        return roots + ([self.rt.settings.repo] if self.rt.settings.repo else [])


@asynccontextmanager
async def open_memory(rt: Any) -> AsyncIterator[MemoryService]:
    """Vector memory over Chroma (embedded in ``CHIFFON_HOME/chroma`` unless ``chroma_url``) for ``rt``; the
    client opens on first use (:class:`~servers.memory.vectors.LazyClient`), so a server starts without it."""
    settings = rt.settings
    client = LazyClient(functools.partial(open_client, settings.home, settings.chroma_url))
    yield MemoryService(rt, VectorMemory(client, make_embedder(settings.memory), settings.memory))
