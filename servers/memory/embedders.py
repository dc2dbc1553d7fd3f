"""Embedding backends for vector memory: the local MiniLM (no network) or Ollama.

Every embedder names its model and dimension; collections record both and refuse
vectors from another (:class:`~shared.errors.EmbeddingMismatch`).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import httpx
import numpy as np

from chiffon.servers.memory.minilm import DIMENSION, MODEL_NAME, local_model
from chiffon.shared.config import MemorySettings
from chiffon.shared.errors import ServiceUnavailable


class Embedder(Protocol):
    """Texts -> unit-norm float32 vectors, shape ``(n, dimension)``."""

    name: str

    async def dimension(self) -> int:
        """Vector length (may probe the backend once)."""
        ...

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Raises ServiceUnavailable when the backend cannot be reached."""
        ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 in-process (:mod:`.embeddings`), run in a worker thread."""

    name = MODEL_NAME

    async def dimension(self) -> int:
        return DIMENSION

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(local_model().embed, texts)


class OllamaEmbedder:
    """``POST /api/embed`` on Ollama (``nomic-embed-text`` on the ai host); vectors normalised here."""

    def __init__(self, url: str, model: str) -> None:
        self.name = f"ollama/{model}"
        self.model = model
        self.url = url.rstrip("/")
        self._dimension: int | None = None
        self._client = httpx.AsyncClient(base_url=self.url, timeout=httpx.Timeout(60, connect=3))

    async def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int((await self.embed(["dimension probe"])).shape[1])
        return self._dimension

    async def embed(self, texts: list[str]) -> np.ndarray:
        try:
            response = await self._client.post("/api/embed", json={"model": self.model, "input": texts})
            response.raise_for_status()
            vectors = np.asarray(response.json()["embeddings"], dtype=np.float32)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise ServiceUnavailable(f"Ollama embeddings at {self.url} ({self.model}) failed: {exc}") from exc
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self._dimension = int(vectors.shape[1])
        unit: np.ndarray = vectors / np.clip(norms, 1e-12, None)
        return unit


def make_embedder(settings: MemorySettings) -> Embedder:
    """The embedder ``memory.embedder`` names."""
    if settings.embedder == "ollama":
        return OllamaEmbedder(settings.ollama_url, settings.ollama_model)
    return LocalEmbedder()
