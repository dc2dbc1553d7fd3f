"""Ollama's native API through the official ``ollama`` async client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import ollama

from chiffon.servers.llm.backends.base import status_error
from chiffon.servers.llm.types import BackendHealth, Chunk, Delta, Done, Message
from chiffon.shared.config import LLMBackendConfig
from chiffon.shared.errors import BackendError


class OllamaBackend:
    """Streams ``POST /api/chat`` (NDJSON); probes ``GET /api/tags``, never a generate."""

    kind = "ollama"
    native_tools = False  # actions come as grammar-constrained JSON (json_schema)
    has_credential = True  # a local endpoint needs no API key

    def __init__(self, name: str, cfg: LLMBackendConfig) -> None:
        self.name = name
        self.cfg = cfg
        self._client = ollama.AsyncClient(host=cfg.url, timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s))

    def _error(self, exc: Exception) -> BackendError:
        if isinstance(exc, ollama.ResponseError):
            return status_error(self.name, exc.status_code, exc.error)
        return BackendError(self.name, f"{type(exc).__name__}: {exc}", transient=True)

    async def stream(self, model: str, messages: list[Message], max_tokens: int, temperature: float,
                     json_schema: dict[str, Any] | None = None,
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[Chunk]:
        try:
            parts = await self._client.chat(  # type: ignore[call-overload]  # the SDK's overloads want literal bools
                model=model, messages=[m.model_dump() for m in messages], stream=True,
                options={"num_predict": max_tokens, "temperature": temperature},
                **({"format": json_schema} if json_schema is not None else {}),  # structured outputs
            )
            async for part in parts:
                if part.message and part.message.content:
                    yield Delta(part.message.content)
                if part.done:
                    yield Done(part.prompt_eval_count, part.eval_count, part.done_reason or "stop")
                    return
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError, ValueError) as exc:
            # ValueError: a line that is not JSON (pydantic's ValidationError is one too).
            raise self._error(exc) from exc
        raise BackendError(self.name, "stream ended before done=true", transient=True)

    async def health(self) -> BackendHealth:
        try:
            listing = await self._client.list()
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError, ValueError) as exc:
            return BackendHealth(False, f"{self.cfg.url}: {type(exc).__name__}: {exc}")
        return BackendHealth(True, f"{self.cfg.url}: up", [m.model or "?" for m in listing.models])

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        try:
            response = await self._client.embed(model=model, input=texts)
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError, ValueError) as exc:
            raise self._error(exc) from exc
        return [list(v) for v in response.embeddings]

    async def aclose(self) -> None:
        await self._client.close()
