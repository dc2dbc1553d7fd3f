"""Engines loaded lazily, once per process, used off the event loop, unloaded when idle.

A model loads on first use behind a per-model lock (concurrent first requests load
it once), inference runs in a worker thread one request at a time per model (the
engines use every core themselves), and a reaper unloads models unused for
``voice.idle_unload_s`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import numpy as np

from chiffon.servers.hostd import engines
from chiffon.shared.config import Settings
from chiffon.shared.error_bus import report_error, report_recovery
from chiffon.shared.errors import InvalidInput

log = logging.getLogger(__name__)
T = TypeVar("T")

STT_ALIASES = ("whisper-1",)  # OpenAI's model id: the host's default Whisper
TTS_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")  # OpenAI's ids: the host's default TTS engine
TTS_ENGINES = ("kokoro", "piper")


class EnginePool:
    """The host's speech engines, keyed ``stt:<model>`` and ``tts:<engine>``."""

    def __init__(self, settings: Settings, admit: Callable[[str], Awaitable[None]] | None = None) -> None:
        """``admit(key)`` runs before a model loads and may refuse it (hostd's VRAM budget)."""
        self.settings = settings
        self._admit = admit
        self._engines: dict[str, Any] = {}
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._use_locks: dict[str, asyncio.Lock] = {}
        self._last_used: dict[str, float] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.failures: dict[str, str] = {}  # engine key -> why its last load failed (cleared when one succeeds)

    def stt_name(self, model: str | None) -> str:
        """The Whisper model for a request's ``model`` (None or whisper-1: the default). Raises InvalidInput."""
        served = self.settings.voice.stt_models
        if model in (None, "", *STT_ALIASES):
            return served[0]
        if model not in served:
            raise InvalidInput("model", f"{model!r} is not served here; use one of {', '.join([*served, *STT_ALIASES])}")
        return model  # type: ignore[return-value]

    def tts_name(self, model: str | None) -> str:
        """The TTS engine for a request's ``model`` (None or an OpenAI id: the default). Raises InvalidInput."""
        if model in (None, "", *TTS_ALIASES):
            return self.settings.voice.tts_engine
        if model not in TTS_ENGINES:
            raise InvalidInput("model", f"{model!r} is not one of {', '.join([*TTS_ENGINES, *TTS_ALIASES])}")
        return model  # type: ignore[return-value]

    async def _get(self, key: str, load: Callable[[], T]) -> T:
        if key not in self._engines:
            async with self._load_locks.setdefault(key, asyncio.Lock()):
                if key not in self._engines:
                    if self._admit is not None:
                        await self._admit(key)
                    started = time.perf_counter()
                    try:
                        self._engines[key] = await asyncio.to_thread(load)
                    except Exception as exc:
                        self.failures[key] = f"{type(exc).__name__}: {exc}"[:500]
                        report_error("hostd", "engine_failed", f"{key} failed to load: {self.failures[key]}",
                                     "error", {"host": self.settings.host})
                        raise
                    log.info("loaded %s in %.1f s", key, time.perf_counter() - started)
                    if self.failures.pop(key, None) is not None:
                        report_recovery("hostd", f"{key} loads again", {"host": self.settings.host})
        self._last_used[key] = time.monotonic()
        self._ensure_reaper()
        return self._engines[key]  # type: ignore[no-any-return]

    async def stt(self, model: str | None) -> engines.WhisperEngine:
        """The loaded Whisper engine for ``model``. Raises InvalidInput, ConfigError (model not present)."""
        name = self.stt_name(model)
        return await self._get(f"stt:{name}", lambda: engines.load_stt(self.settings, name))

    async def tts(self, model: str | None) -> engines.KokoroEngine | engines.PiperEngine:
        """The loaded TTS engine for ``model``. Raises InvalidInput, ConfigError (model not present)."""
        name = self.tts_name(model)
        return await self._get(f"tts:{name}", lambda: engines.load_tts(self.settings, name))

    @contextlib.asynccontextmanager
    async def using(self, engine: Any) -> AsyncIterator[None]:
        """Hold ``engine`` for one request: one inference at a time, and no unload meanwhile."""
        key = next(k for k, e in self._engines.items() if e is engine)
        async with self._use_locks.setdefault(key, asyncio.Lock()):
            try:
                yield
            finally:
                self._last_used[key] = time.monotonic()

    async def transcribe(self, model: str | None, samples: np.ndarray, language: str | None,
                         prompt: str | None) -> engines.Transcript:
        """Transcribe 16 kHz float32 ``samples`` in a worker thread."""
        engine = await self.stt(model)
        async with self.using(engine):
            return await asyncio.to_thread(engine.transcribe, samples, language, prompt)

    async def speak(self, model: str | None, text: str, voice: str | None, speed: float
                    ) -> tuple[int, str, AsyncIterator[np.ndarray]]:
        """Validate, then ``(sample_rate, voice, sentences)``: audio arrays produced one sentence at a time.

        Raises:
            InvalidInput: unknown voice (the voices are listed), speed outside 0.25..4.
        """
        engine = await self.tts(model)
        chosen = voice or engines.default_voice(engine, self.settings.voice.default_voice)
        if chosen not in engine.voices():
            raise InvalidInput("voice", f"{chosen!r} is not a {engine.name} voice here; voices: {', '.join(engine.voices())}")
        if not 0.25 <= speed <= 4.0:
            raise InvalidInput("speed", f"must be within 0.25..4.0, got {speed}")

        async def stream() -> AsyncIterator[np.ndarray]:
            async with self.using(engine):
                pieces = engine.synthesize(text, chosen, speed)
                while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                    yield piece

        return engine.sample_rate, chosen, stream()

    def loaded(self) -> list[str]:
        """Keys of the engines in memory now."""
        return sorted(self._engines)

    def _ensure_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap(), name="chiffon-hostd-reaper")

    async def _reap(self) -> None:
        ttl = self.settings.voice.idle_unload_s
        while self._engines:
            await asyncio.sleep(min(30.0, ttl / 2))
            now = time.monotonic()
            for key in [k for k, t in self._last_used.items() if now - t >= ttl and k in self._engines]:
                lock = self._use_locks.get(key)
                if lock is not None and lock.locked():
                    continue
                del self._engines[key]
                log.info("unloaded %s after %.0f s idle", key, ttl)

    async def close(self) -> None:
        """Stop the reaper and drop every engine."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        self._engines.clear()
