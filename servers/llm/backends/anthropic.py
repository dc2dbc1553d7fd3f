"""Claude through the official ``anthropic`` async SDK (Messages API, streaming)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from chiffon.servers.llm.backends.base import schema_instruction, status_error
from chiffon.servers.llm.types import BackendHealth, Chunk, Delta, Done, Message, ToolCall
from chiffon.shared.config import LLMBackendConfig
from chiffon.shared.errors import BackendError, MissingCredential


class AnthropicBackend:
    """Streams ``POST /v1/messages``; probes ``GET /v1/models``. SDK retries are off: the router retries.

    The SDK (2.x) runs on ``httpx2``: timeouts are plain seconds, errors arrive as ``anthropic.APIError``.
    """

    kind = "anthropic"
    native_tools = True

    def __init__(self, name: str, cfg: LLMBackendConfig) -> None:
        self.name = name
        self.cfg = cfg
        key = os.environ.get(cfg.api_key_env)
        self._client = None if not key else anthropic.AsyncAnthropic(
            api_key=key, base_url=cfg.url or None, max_retries=0, timeout=cfg.timeout_s,
        )

    @property
    def has_credential(self) -> bool:
        """Whether the API key variable was set when the backend was built."""
        return self._client is not None

    def _require(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            raise MissingCredential(self.cfg.api_key_env, f"the Anthropic backend {self.name!r}")
        return self._client

    def _error(self, exc: Exception) -> BackendError:
        if isinstance(exc, anthropic.APIStatusError):
            return status_error(self.name, exc.status_code, str(exc.message))
        return BackendError(self.name, f"{type(exc).__name__}: {exc}", transient=True)

    async def stream(self, model: str, messages: list[Message], max_tokens: int, temperature: float,
                     json_schema: dict[str, Any] | None = None,
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[Chunk]:
        client = self._require()
        instruction = [schema_instruction(json_schema)] if json_schema is not None and not tools else []
        system = "\n\n".join([m.content for m in messages if m.role == "system"] + instruction)
        turns = [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
        extra: dict[str, Any] = {"system": system} if system else {}
        if tools:  # native tool use; "any": the model must call one of them
            extra.update(tools=tools, tool_choice={"type": "any"})
        stopped = False
        try:
            # SDK 2.x takes no sampling parameters (current Claude models fix them): temperature is not sent.
            async with client.messages.stream(model=model, max_tokens=max_tokens,
                                              messages=turns, **extra) as stream:  # type: ignore[arg-type]  # dicts of the SDK's TypedDict shape
                async for event in stream:
                    if event.type == "text" and event.text:
                        yield Delta(event.text)
                    elif event.type == "message_stop":
                        stopped = True
                if not stopped:
                    raise BackendError(self.name, "stream ended before message_stop", transient=True)
                final = await stream.get_final_message()
        except anthropic.APIError as exc:  # the SDK wraps transport errors in APIConnectionError
            raise self._error(exc) from exc
        for block in final.content:
            if block.type == "tool_use":
                yield ToolCall(block.name, dict(block.input) if isinstance(block.input, dict) else {})
        yield Done(final.usage.input_tokens, final.usage.output_tokens, final.stop_reason or "end_turn")

    async def health(self) -> BackendHealth:
        if self._client is None:
            return BackendHealth(False, f"{self.cfg.api_key_env} is not set")
        try:
            page = await self._client.models.list(limit=20, timeout=self.cfg.connect_timeout_s * 2)
        except anthropic.APIError as exc:  # the SDK wraps transport errors in APIConnectionError
            return BackendHealth(False, f"{type(exc).__name__}: {exc}")
        return BackendHealth(True, "api reachable", [m.id for m in page.data])

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        raise BackendError(self.name, "the Anthropic API has no embeddings endpoint; use an Ollama or llama.cpp backend")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
