"""Local stand-ins for the two APIs that cannot run here, speaking their real wire formats:

* Ollama's native API: ``GET /api/tags``, ``POST /api/chat`` (NDJSON stream), ``POST /api/embed``;
* Anthropic's Messages API: ``GET /v1/models``, ``POST /v1/messages`` (server-sent events:
  message_start, content_block_start/delta/stop, message_delta, message_stop), ``x-api-key`` or bearer auth.

``state.mode`` switches failure modes: ``ok``, ``garbage`` (a non-JSON line), ``cut`` (the
connection closes mid-stream), ``error`` (HTTP 500, or 529 overloaded for Anthropic).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

API_KEY = "sk-ant-test-key"


@dataclass
class FakeState:
    """What the fake answers and what it saw."""

    mode: str = "ok"
    reply: Callable[[list[dict[str, Any]]], str] = lambda msgs: "fine, " + msgs[-1]["content"][:40]
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [p + (" " if i < len(parts) - 1 else "") for i, p in enumerate(parts)]


def ollama_app(state: FakeState) -> Starlette:
    """Ollama's /api/tags, /api/chat and /api/embed."""

    async def tags(request: Request) -> JSONResponse:
        return JSONResponse({"models": [
            {"name": n, "model": n, "modified_at": "2026-11-01T00:00:00Z", "size": 1_900_000_000, "digest": "0" * 64,
             "details": {"format": "gguf", "family": "qwen2", "parameter_size": "3B", "quantization_level": "Q4_K_M"}}
            for n in ("qwen2.5:3b", "qwen2.5:7b", "nomic-embed-text:latest")]})

    async def chat(request: Request) -> Any:
        body = await request.json()
        state.requests.append(body)
        if state.mode == "error":
            return JSONResponse({"error": "model runner crashed"}, status_code=500)
        text = state.reply(body["messages"])
        created = "2026-11-22T10:00:00Z"

        async def lines() -> Any:
            for i, word in enumerate(_words(text)):
                if state.mode == "garbage" and i == 1:
                    yield b"<html>502 Bad Gateway</html>\n"
                    return
                if state.mode == "cut" and i == 2:
                    return
                await asyncio.sleep(state.delay_s)
                yield (json.dumps({"model": body["model"], "created_at": created,
                                   "message": {"role": "assistant", "content": word}, "done": False}) + "\n").encode()
            yield (json.dumps({"model": body["model"], "created_at": created,
                               "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                               "total_duration": 1, "prompt_eval_count": 12, "eval_count": len(_words(text))}) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def embed(request: Request) -> JSONResponse:
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = [[float(len(t)), float(sum(map(ord, t)) % 97), 1.0] for t in texts]
        return JSONResponse({"model": body["model"], "embeddings": vectors})

    return Starlette(routes=[Route("/api/tags", tags), Route("/api/chat", chat, methods=["POST"]),
                             Route("/api/embed", embed, methods=["POST"])])


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def anthropic_app(state: FakeState) -> Starlette:
    """Anthropic's /v1/models and streaming /v1/messages."""

    def denied(request: Request) -> JSONResponse | None:
        # SDK 1.x sends x-api-key; 2.x sends Authorization: Bearer. The API takes either.
        if API_KEY not in (request.headers.get("x-api-key"), request.headers.get("authorization", "")[7:]):
            return JSONResponse({"type": "error", "error": {"type": "authentication_error",
                                                            "message": "invalid x-api-key"}}, status_code=401)
        return None

    async def models(request: Request) -> JSONResponse:
        if (resp := denied(request)) is not None:
            return resp
        data = [{"type": "model", "id": "claude-sonnet-4-6", "display_name": "Claude Sonnet 4.6",
                 "created_at": "2025-09-29T00:00:00Z"}]
        return JSONResponse({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[0]["id"]})

    async def messages(request: Request) -> Any:
        if (resp := denied(request)) is not None:
            return resp
        body = await request.json()
        state.requests.append(body)
        if state.mode == "error":
            return JSONResponse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                                status_code=529)
        text = state.reply(body["messages"])
        words = _words(text)
        tokens_in = sum(len(m["content"]) for m in body["messages"]) // 4 + 1
        use = _tool_use(text, body.get("tools") or [])
        if use is not None:
            return StreamingResponse(_tool_use_events(body["model"], tokens_in, *use), media_type="text/event-stream")

        async def events() -> Any:
            yield _sse("message_start", {"type": "message_start", "message": {
                "id": "msg_01fake", "type": "message", "role": "assistant", "model": body["model"], "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": tokens_in, "output_tokens": 1}}})
            yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}})
            yield _sse("ping", {"type": "ping"})
            for i, word in enumerate(words):
                if state.mode == "cut" and i == 2:
                    return
                await asyncio.sleep(state.delay_s)
                yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                   "delta": {"type": "text_delta", "text": word}})
            yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
            yield _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                            "stop_sequence": None},
                                         "usage": {"output_tokens": len(words)}})
            yield _sse("message_stop", {"type": "message_stop"})

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/messages", messages, methods=["POST"])])


def _tool_use(text: str, tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """With tools offered, a scripted JSON reply becomes a tool_use: ``{"tool", "arguments"}`` calls that tool;
    any other object is the input of the one tool that is not a repo/memory/ansible tool (the final answer)."""
    if not tools:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # plain text: the model ignored the tools
    if not isinstance(value, dict):
        return None
    if "tool" in value:
        return str(value["tool"]), dict(value.get("arguments") or {})
    return tools[-1]["name"], value


async def _tool_use_events(model: str, tokens_in: int, name: str, arguments: dict[str, Any]) -> Any:
    """The Messages API's event stream for one tool_use block, its input streamed as input_json_delta."""
    yield _sse("message_start", {"type": "message_start", "message": {
        "id": "msg_01faketool", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": tokens_in, "output_tokens": 1}}})
    yield _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {
        "type": "tool_use", "id": "toolu_01fake", "name": name, "input": {}}})
    raw = json.dumps(arguments)
    for i in range(0, len(raw), 16):
        yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "input_json_delta", "partial_json": raw[i:i + 16]}})
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                 "usage": {"output_tokens": len(raw) // 4 + 1}})
    yield _sse("message_stop", {"type": "message_stop"})


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_app(app: Starlette, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on loopback in a thread; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"fake server on port {port} did not start")
        threading.Event().wait(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
