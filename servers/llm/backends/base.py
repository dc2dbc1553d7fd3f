"""The protocol every LLM backend implements, and the error helpers its modules share.

The backend modules (:mod:`.llamacpp`, :mod:`.ollama`, :mod:`.anthropic`, :mod:`.inprocess`) import this
module; the package's :func:`~servers.llm.backends.make_backend` imports them. Nothing here imports a backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from chiffon.servers.llm.types import BackendHealth, Chunk, Message
from chiffon.shared.errors import BackendError, ContextOverflow

# Substrings of the error bodies llama.cpp, llama-cpp-python, Ollama and Anthropic send when a prompt
# does not fit: "exceed context window", "exceeds the available context size", "prompt is too long".
_OVERFLOW_MARKERS = ("context window", "context size", "context length", "prompt is too long", "too many tokens")


class Backend(Protocol):
    """What the router needs from an inference endpoint."""

    name: str
    kind: str
    native_tools: bool  # honours ``tools`` with real tool use

    @property
    def has_credential(self) -> bool:
        """False when the backend needs an API key that was not set (it cannot serve); local ones: True."""
        ...

    def stream(self, model: str, messages: list[Message], max_tokens: int, temperature: float,
               json_schema: dict[str, Any] | None = None,
               tools: list[dict[str, Any]] | None = None) -> AsyncIterator[Chunk]:
        """Stream a chat completion. Raises BackendError (transient or not) or ContextOverflow.

        ``json_schema``: the reply must be one JSON value of this schema. Backends with constrained decoding
        enforce it (llama.cpp: ``response_format`` grammar; Ollama: ``format``); the others get it as an
        instruction, and the caller validates. ``tools`` (``[{name, description, input_schema}]``): a
        backend with native tool use (``native_tools``) must call one of them and yields
        :class:`~servers.llm.types.ToolCall` chunks, ignoring ``json_schema``; the others ignore ``tools``.
        """
        ...

    async def health(self) -> BackendHealth:
        """A cheap probe that never generates."""
        ...

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """One vector per text. Raises BackendError."""
        ...

    async def aclose(self) -> None:
        """Release connections and models."""
        ...


def schema_instruction(json_schema: dict[str, Any]) -> str:
    """The system-prompt line that asks a backend without constrained decoding for schema-shaped JSON."""
    import json

    return ("Reply with exactly one JSON value, no prose and no code fence, matching this JSON Schema: "
            + json.dumps(json_schema, separators=(",", ":")))


def status_error(backend: str, status: int, body: str) -> BackendError:
    """Classify an HTTP error: 408/429/5xx (and Anthropic's 529) are transient; overflow is its own kind."""
    text = body[:300].strip()
    if status in (400, 413, 422) and any(m in text.lower() for m in _OVERFLOW_MARKERS):
        return ContextOverflow(backend, f"HTTP {status}: {text}")
    transient = status in (408, 409, 425, 429) or status >= 500
    return BackendError(backend, f"HTTP {status}: {text}", transient=transient)
