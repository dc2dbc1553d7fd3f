"""Speech engines behind one interface each: Whisper for speech-to-text, Kokoro and Piper for text-to-speech.

Engines are blocking and hold a loaded model; :mod:`servers.hostd.pool` loads them
lazily, runs them in worker threads and unloads them when idle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from chiffon.servers.hostd import models
from chiffon.servers.hostd.audio import WHISPER_RATE, sentences
from chiffon.shared.config import Settings
from chiffon.shared.errors import ConfigError, InvalidInput

logging.getLogger("phonemizer").setLevel(logging.ERROR)  # it warns on every sentence it splits differently

KOKORO_PREFERRED = ("af_heart", "am_michael", "af_bella", "jm_kumo")  # first present is the default voice


class Segment(BaseModel):
    """One Whisper segment (times in seconds from the start of the audio)."""

    id: int
    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float


class Transcript(BaseModel):
    """A transcription: text, language, segments, audio duration and real-time factor."""

    text: str
    language: str
    duration_s: float = Field(description="Length of the audio, seconds.")
    segments: list[Segment]
    processing_s: float = Field(description="Inference time, seconds.")
    rtf: float = Field(description="Real-time factor: processing_s / duration_s (lower is faster; < 1 is faster "
                                   "than real time).")
    model: str


class SpeechToText(Protocol):
    """Transcribes 16 kHz mono float32 audio."""

    name: str

    def transcribe(self, samples: np.ndarray, language: str | None, prompt: str | None) -> Transcript:
        """Raises InvalidInput for a language the model cannot transcribe."""
        ...


class TextToSpeech(Protocol):
    """Speaks text, one audio array per sentence."""

    name: str
    sample_rate: int

    def voices(self) -> list[str]:
        """Voice ids this engine serves."""
        ...

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        """float32 mono arrays in [-1, 1], one per sentence, as each is ready."""
        ...


class WhisperEngine:
    """faster-whisper (CTranslate2) on the CPU, or CUDA where the host has it."""

    def __init__(self, located: models.Located, compute_type: str = "int8") -> None:
        from faster_whisper import WhisperModel

        self.name = located.name
        self.english_only = located.name.endswith(".en")
        self.model = WhisperModel(str(located.paths[0]), device="auto", compute_type=compute_type, cpu_threads=0)

    def transcribe(self, samples: np.ndarray, language: str | None, prompt: str | None) -> Transcript:
        if self.english_only and language not in (None, "en"):
            raise InvalidInput("language", f"{self.name} transcribes English only; use a multilingual model "
                                           "(voice.stt_models: base) for {language!r}")
        duration = samples.size / WHISPER_RATE
        started = time.perf_counter()
        parts, info = self.model.transcribe(samples, language=language or ("en" if self.english_only else None),
                                            initial_prompt=prompt or None, beam_size=5, vad_filter=False,
                                            condition_on_previous_text=False)
        segments = [Segment(id=s.id, start=round(s.start, 2), end=round(s.end, 2), text=s.text.strip(),
                            avg_logprob=round(s.avg_logprob, 3), no_speech_prob=round(s.no_speech_prob, 3))
                    for s in parts]
        # Whisper invents words in silence; a segment it itself rates as probably no speech is dropped
        spoken = [s for s in segments if not (s.no_speech_prob > 0.6 and s.avg_logprob < -1.0)]
        elapsed = time.perf_counter() - started
        return Transcript(text=" ".join(s.text for s in spoken).strip(), language=info.language,
                          duration_s=round(duration, 3), segments=spoken, processing_s=round(elapsed, 3),
                          rtf=round(elapsed / duration, 4) if duration else 0.0, model=self.name)


class KokoroEngine:
    """Kokoro-82M v1.0 through kokoro-onnx (ONNX Runtime), English G2P by espeak-ng."""

    sample_rate = 24_000

    def __init__(self, located: models.Located) -> None:
        from kokoro_onnx import Kokoro

        model, voices = located.paths
        self.name = "kokoro"
        self.model_name = located.name
        self.kokoro = Kokoro(str(model), str(voices))

    def voices(self) -> list[str]:
        return sorted(self.kokoro.voices.keys())  # type: ignore[attr-defined]  # an npz archive, typed as an array

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        for sentence in sentences(text):
            audio, _ = self.kokoro.create(sentence, voice=voice, speed=speed, lang="en-us")
            yield np.asarray(audio, dtype=np.float32)


class PiperEngine:
    """Piper (VITS, ONNX Runtime): one voice per model file, faster than Kokoro, plainer."""

    def __init__(self, located: list[models.Located]) -> None:
        from piper import PiperVoice

        self.name = "piper"
        self._voices = {m.name: PiperVoice.load(m.paths[0]) for m in located}
        self.sample_rate = next(iter(self._voices.values())).config.sample_rate

    def voices(self) -> list[str]:
        return sorted(self._voices)

    def synthesize(self, text: str, voice: str, speed: float) -> Iterator[np.ndarray]:
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=1.0 / speed)
        for chunk in self._voices[voice].synthesize(text, syn_config=config):
            yield np.asarray(chunk.audio_float_array, dtype=np.float32)


def load_stt(settings: Settings, name: str) -> WhisperEngine:
    """Load Whisper ``name``. Raises ConfigError when it is not present (says how to get it)."""
    found = models.whisper(settings, name)
    if found is None:
        raise ConfigError(f"Whisper {name} is not in {settings.models_dir / 'whisper'}; run `chiffon models pull "
                          f"--engine whisper` on this host")
    return WhisperEngine(found, settings.voice.compute_type)


def load_tts(settings: Settings, engine: str) -> KokoroEngine | PiperEngine:
    """Load TTS ``engine`` (kokoro or piper). Raises ConfigError when its model is not present."""
    if engine == "kokoro":
        found = models.kokoro(settings)
        if found is None:
            raise ConfigError(f"Kokoro is not in {settings.models_dir / 'kokoro'}; run `chiffon models pull "
                              "--engine kokoro` on this host")
        return KokoroEngine(found)
    voices = [m for m in (models.piper(settings, v) for v in settings.voice.piper_voices) if m is not None]
    if not voices:
        raise ConfigError(f"no Piper voice of {settings.voice.piper_voices} is in {settings.models_dir / 'piper'}; "
                          "run `chiffon models pull --engine piper`")
    return PiperEngine(voices)


def default_voice(engine: TextToSpeech, configured: str | None) -> str:
    """``configured`` when the engine has it, else its first preferred voice present, else its first voice."""
    voices = engine.voices()
    if configured in voices:
        return configured  # type: ignore[return-value]
    return next((v for v in KOKORO_PREFERRED if v in voices), voices[0])
