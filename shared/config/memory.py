"""chiffon-memory (``memory:``): embeddings, dedup and retention."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from chiffon.shared.config.base import Section
from chiffon.shared.resources import checkout, example_repo


class MemorySettings(Section):
    """chiffon-memory: embeddings, dedup and retention."""

    embedder: Literal["local", "ollama"] = Field(
        "local", description="local: all-MiniLM-L6-v2 in-process (no network); ollama: ollama_model on ollama_url.")
    ollama_url: str = Field("http://127.0.0.1:11434", description="Ollama for embedder=ollama.")
    ollama_model: str = Field("nomic-embed-text", description="Ollama embedding model.")
    dedup_threshold: float = Field(0.92, gt=0, le=1, description="Cosine similarity at or above which a new "
                                                                 "memory updates the existing one (same scope).")
    retention_days: int | None = Field(90, gt=0, description="Chat history older than this is purged; unset keeps all.")
    max_text_chars: int = Field(20_000, gt=0, description="Longest memory or message accepted, characters.")
    index_roots: list[Path] = Field(
        default_factory=lambda: [Path.home(), checkout() or example_repo()],
        description="Directories index_repo may read (with everything below them); CHIFFON_REPO is always allowed. "
                    "Default: the home folder and the chiffon checkout (installed: the shipped example repo).")
