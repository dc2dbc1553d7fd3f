"""llama.cpp's server (``llama-server`` or ``python -m llama_cpp.server``) over its OpenAI-compatible API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from chiffon.servers.llm.backends.base import status_error
from chiffon.servers.llm.types import BackendHealth, Chunk, Delta, Done, Message
from chiffon.shared.config import LLMBackendConfig
from chiffon.shared.errors import BackendError


class LlamaCppServer:
    """Streams ``POST /v1/chat/completions`` (server-sent events); probes ``GET /v1/models``."""

    kind = "llamacpp"
    native_tools = False  # actions come as grammar-constrained JSON (json_schema)
    has_credential = True  # a local endpoint needs no API key

    def __init__(self, name: str, cfg: LLMBackendConfig) -> None:
        self.name = name
        self.cfg = cfg
        self._client = httpx.AsyncClient(
            base_url=cfg.url.rstrip("/"),
            timeout=httpx.Timeout(cfg.timeout_s, connect=cfg.connect_timeout_s),
            limits=httpx.Limits(max_connections=max(cfg.slots * 2, 4), max_keepalive_connections=cfg.slots * 2),
        )

    async def stream(self, model: str, messages: list[Message], max_tokens: int, temperature: float,
                     json_schema: dict[str, Any] | None = None,
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[Chunk]:
        body: dict[str, Any] = {
            "model": model,
            "messages": [m.model_dump() for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if json_schema is not None:  # llama-server and llama_cpp.server turn this into a grammar
            body["response_format"] = {"type": "json_object", "schema": json_schema}
        pieces = 0
        finish: str | None = None
        usage: dict | None = None
        try:
            async with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    raise status_error(self.name, response.status_code, (await response.aread()).decode(errors="replace"))
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        if finish is None:
                            raise BackendError(self.name, "stream ended without a finish reason", transient=True)
                        usage = usage or {}
                        yield Done(usage.get("prompt_tokens"), usage.get("completion_tokens") or pieces, finish)
                        return
                    try:
                        event = json.loads(data)
                    except json.JSONDecodeError as exc:
                        raise BackendError(self.name, f"unparseable stream event {data[:80]!r}", transient=True) from exc
                    if event.get("usage"):
                        usage = event["usage"]
                    for choice in event.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            pieces += 1
                            yield Delta(text)
                        finish = choice.get("finish_reason") or finish
        except httpx.HTTPError as exc:
            raise BackendError(self.name, f"{type(exc).__name__}: {exc or 'connection failed'}", transient=True) from exc
        raise BackendError(self.name, "connection closed mid-stream (no [DONE])", transient=True)

    async def health(self) -> BackendHealth:
        try:
            response = await self._client.get("/v1/models", timeout=self.cfg.connect_timeout_s)
            response.raise_for_status()
            models = [m.get("id", "?") for m in response.json().get("data", [])]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            return BackendHealth(False, f"{self.cfg.url}: {type(exc).__name__}: {exc}")
        return BackendHealth(True, f"{self.cfg.url}: up", models)

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        try:
            response = await self._client.post("/v1/embeddings", json={"model": model, "input": texts})
        except httpx.HTTPError as exc:
            raise BackendError(self.name, f"{type(exc).__name__}: {exc}", transient=True) from exc
        if response.status_code != 200:
            raise status_error(self.name, response.status_code, response.text)
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        return [d["embedding"] for d in data]

    async def aclose(self) -> None:
        await self._client.aclose()
