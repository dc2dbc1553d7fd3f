"""What the voice tools do: transcribe, speak, and a whole voice turn (converse).

``converse`` streams the LLM's answer and speaks it sentence by sentence while
the rest is still being generated, so the first audio is ready long before the
whole reply is synthesised. Timings per stage come back with the result.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from chiffon.servers.hostd.audio import split_complete, wav_header
from chiffon.servers.voice.client import HostdClient
from chiffon.shared import metrics
from chiffon.shared.config import Settings
from chiffon.shared.errors import ConfigError, InvalidInput, NotFound

if TYPE_CHECKING:
    from chiffon.servers.llm.router import Router
    from chiffon.shared.runtime import Runtime
    from chiffon.shared.store import Store

HISTORY_TURNS = 20
SYSTEM_PROMPT = ("You are chiffon, a homelab assistant answering by voice. Answer in at most three short sentences "
                 "of plain text: no lists, no markdown, no code.")


class Transcription(BaseModel):
    """What was said."""

    text: str = Field(description="Empty for silence.")
    language: str
    duration_s: float
    rtf: float = Field(description="Real-time factor: processing time / audio duration.")
    processing_s: float
    model: str
    segments: list[dict[str, Any]]


class Speech(BaseModel):
    """Audio written to disk."""

    path: str = Field(description="The wav file (mono 16-bit PCM).")
    uri: str
    duration_s: float
    sample_rate: int
    voice: str


class Timings(BaseModel):
    """Seconds per stage of a voice turn, from the moment the audio arrived."""

    stt_s: float
    llm_ttft_s: float | None = Field(description="LLM time to first token.")
    llm_s: float
    tts_first_audio_s: float | None = Field(description="Until the first sentence's audio was ready.")
    total_s: float


class Turn(BaseModel):
    """One voice turn."""

    session_id: str
    transcript: str
    reply: str
    audio: Speech | None = Field(description="The spoken reply; None when nothing was said.")
    timings: Timings
    answered_by: dict[str, Any] | None


def read_audio(audio: str, max_bytes: int) -> tuple[bytes, str]:
    """``audio`` as a file path or base64 text -> ``(bytes, file name)``.

    Raises:
        InvalidInput: empty, neither an existing file nor valid base64, or over ``max_bytes``.
    """
    if not audio or not audio.strip():
        raise InvalidInput("audio", "is empty: give a file path or base64-encoded audio")
    candidate = Path(audio).expanduser() if len(audio) < 4096 and "\n" not in audio else None
    try:
        is_file = candidate is not None and candidate.is_file()
    except OSError:  # a long base64 string is not a valid file name
        is_file = False
    if candidate is not None and is_file:
        if candidate.stat().st_size > max_bytes:
            raise InvalidInput("audio", f"{candidate} is larger than {max_bytes} bytes (voice.max_upload_bytes)")
        return candidate.read_bytes(), candidate.name
    try:
        data = base64.b64decode(audio.split(",", 1)[-1] if audio.startswith("data:") else audio, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("audio", "neither an existing file nor valid base64") from None
    if len(data) > max_bytes:
        raise InvalidInput("audio", f"{len(data)} bytes; at most {max_bytes} (voice.max_upload_bytes)")
    return data, "audio"


@dataclass
class VoiceService:
    """hostd client + where audio files go + (for converse) the LLM router and chat history."""

    settings: Settings
    hostd: HostdClient
    router: Router | None = None
    store: Store | None = None

    @property
    def audio_dir(self) -> Path:
        """Where spoken replies are written (CHIFFON_HOME/voice)."""
        path = self.settings.home / "voice"
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def transcribe(self, audio: str, language: str | None = None) -> Transcription:
        """Transcribe a file path or base64 audio. Raises InvalidInput, ServiceUnavailable, ConfigError."""
        data, name = read_audio(audio, self.settings.voice.max_upload_bytes)
        got = await self.hostd.transcribe(data, filename=name, language=language)
        return Transcription(text=got["text"], language=got["language"], duration_s=got["duration"], rtf=got["rtf"],
                             processing_s=got["processing_s"], model=got["model"], segments=got["segments"])

    def _write(self, pcm: list[bytes], rate: int, voice: str) -> Speech:
        body = b"".join(pcm)
        path = self.audio_dir / f"speech-{uuid.uuid4().hex[:12]}.wav"
        path.write_bytes(wav_header(rate, len(body)) + body)
        return Speech(path=str(path), uri=path.as_uri(), duration_s=round(len(body) / 2 / rate, 3), sample_rate=rate,
                      voice=voice)

    async def speak(self, text: str, voice: str | None = None, speed: float = 1.0, engine: str | None = None) -> Speech:
        """Speak ``text`` into a wav file. Raises InvalidInput (empty or long text, unknown voice), ServiceUnavailable."""
        pcm, rate, used = await self.hostd.speak(text, voice=voice, speed=speed, model=engine)
        return self._write([pcm], rate, used)

    async def converse(self, audio: str, session_id: str, voice: str | None = None, max_tokens: int = 200, *,
                       on_heard: Callable[[str], Awaitable[None]] | None = None,
                       on_audio: Callable[[bytes, int, str], Awaitable[None]] | None = None) -> Turn:
        """Transcribe, answer with the session's history through the router, speak the answer sentence by sentence.

        The user's words and the reply are appended to the session's chat history. ``on_heard(transcript)``, when
        given, gets the transcript as soon as Whisper has it (before the model answers). ``on_audio(pcm, rate,
        sentence)``, when given, receives each sentence's speech (16-bit mono PCM bytes, ``rate`` in Hz) with its
        text as soon as it is synthesized, so a listener hears the first sentence while the model still writes
        the next.

        Raises:
            ConfigError: no LLM tier configured.
            InvalidInput, ServiceUnavailable: bad audio, unknown voice, hostd down.
        """
        from chiffon.servers.llm.types import Hints, Message
        from chiffon.servers.memory import history

        if self.router is None or not self.router.settings.tiers:
            raise ConfigError("converse needs an LLM tier: configure llm.tiers (see README, chiffon-llm)")
        if not session_id or not session_id.strip():
            raise InvalidInput("session_id", "is empty")
        started = time.perf_counter()
        heard = await self.transcribe(audio)
        stt_s = time.perf_counter() - started
        if on_heard is not None:
            await on_heard(heard.text)
        if not heard.text:
            return Turn(session_id=session_id, transcript="", reply="", audio=None, answered_by=None,
                        timings=Timings(stt_s=round(stt_s, 3), llm_ttft_s=None, llm_s=0.0, tts_first_audio_s=None,
                                        total_s=round(stt_s, 3)))
        past: list[Message] = []
        if self.store is not None:
            try:
                past = [Message(role=m.role, content=m.content)  # type: ignore[arg-type]
                        for m in await history.history(self.store, session_id, limit=HISTORY_TURNS)
                        if m.role in ("user", "assistant")]
            except NotFound:
                past = []
        messages = [Message(role="system", content=SYSTEM_PROMPT), *past, Message(role="user", content=heard.text)]

        sentences: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        spoken: list[tuple[int, bytes]] = []
        state: dict[str, Any] = {"buffer": "", "attempt": 0, "first_token": None, "first_audio": None,
                                 "rate": 24_000, "voice": voice or ""}

        async def on_text(piece: str | None) -> None:
            if piece is None:  # a new attempt: what was streamed before will not be the answer
                state["attempt"] += 1
                state["buffer"] = ""
                return
            if state["first_token"] is None:
                state["first_token"] = time.perf_counter()
            done, state["buffer"] = split_complete(state["buffer"] + piece)
            for sentence in done:
                sentences.put_nowait((state["attempt"], sentence))

        async def speaker() -> None:
            while (item := await sentences.get()) is not None:
                attempt, sentence = item
                if attempt != state["attempt"]:
                    continue
                pcm, state["rate"], state["voice"] = await self.hostd.speak(sentence, voice=voice)
                spoken.append((attempt, pcm))
                if on_audio is not None and attempt == state["attempt"]:
                    await on_audio(pcm, state["rate"], sentence)
                if state["first_audio"] is None:
                    state["first_audio"] = time.perf_counter()

        speaking = asyncio.create_task(speaker())
        try:
            llm_started = time.perf_counter()
            result = await self.router.chat(messages, Hints(caller="voice", priority="interactive"),
                                            max_tokens=max_tokens, on_text=on_text)
            llm_s = time.perf_counter() - llm_started
            if state["buffer"].strip():
                sentences.put_nowait((state["attempt"], state["buffer"].strip()))
            sentences.put_nowait(None)
            await speaking
        finally:
            speaking.cancel()
        pcm = [p for attempt, p in spoken if attempt == state["attempt"]]
        speech = self._write(pcm, state["rate"], state["voice"]) if pcm else None
        if self.store is not None:
            await history.append_message(self.store, session_id, "user", heard.text, agent="voice")
            await history.append_message(self.store, session_id, "assistant", result.text or "(no words)", agent="voice",
                                         tokens=result.tokens_out)

        def since(t: float | None) -> float | None:
            return None if t is None else round(t - started, 3)

        timings = Timings(stt_s=round(stt_s, 3), llm_ttft_s=None if state["first_token"] is None
                          else round(state["first_token"] - llm_started, 3),
                          llm_s=round(llm_s, 3), tts_first_audio_s=since(state["first_audio"]),
                          total_s=round(time.perf_counter() - started, 3))
        for stage in ("stt_s", "llm_ttft_s", "tts_first_audio_s", "total_s"):
            if (value := getattr(timings, stage)) is not None:
                metrics.VOICE_STAGE_SECONDS.labels(stage.removesuffix("_s")).observe(value)
        return Turn(session_id=session_id, transcript=heard.text, reply=result.text, audio=speech,
                    answered_by=result.answered_by.model_dump(), timings=timings)



@asynccontextmanager
async def open_voice(rt: Runtime, router: Router | None = None) -> AsyncIterator[VoiceService]:
    """A :class:`VoiceService` over ``rt`` (chat history) and ``router`` (for converse); closes hostd's client."""
    hostd = HostdClient(rt.settings)
    try:
        yield VoiceService(rt.settings, hostd, router, rt.store)
    finally:
        await hostd.aclose()
