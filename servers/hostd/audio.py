"""Audio in and out: decode any common container to 16 kHz mono float32, encode wav / raw PCM.

Decoding uses PyAV through faster-whisper's ``decode_audio`` (FFmpeg's demuxers and
resampler), so any sample rate is resampled and any channel layout mixed down.
"""

from __future__ import annotations

import io
import re
import struct

import numpy as np

from chiffon.shared.errors import InvalidInput

WHISPER_RATE = 16_000
SUPPORTED_INPUT = ("wav", "flac", "mp3", "ogg", "opus", "webm", "m4a", "mp4", "mpeg", "mpga")
SUPPORTED_OUTPUT = ("wav", "pcm")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")


def decode(data: bytes, *, max_seconds: float, field: str = "file") -> np.ndarray:
    """Audio bytes -> float32 mono samples at 16 kHz, shape ``(n,)``, in [-1, 1].

    Raises:
        InvalidInput: empty bytes, bytes that are not audio in a supported format (the formats are listed),
            or audio longer than ``max_seconds``.
    """
    if not data:
        raise InvalidInput(field, "is empty")
    from faster_whisper.audio import decode_audio

    try:
        samples = decode_audio(io.BytesIO(data), sampling_rate=WHISPER_RATE)
    except Exception as exc:  # PyAV raises InvalidDataError, ValueError, IndexError... for non-audio bytes
        raise InvalidInput(field, f"not audio in a supported format ({', '.join(SUPPORTED_INPUT)}): "
                                  f"{type(exc).__name__}: {exc}") from exc
    if samples.size == 0 and len(data) > 44:
        raise InvalidInput(field, f"no audio stream found; send one of {', '.join(SUPPORTED_INPUT)}")
    seconds = samples.size / WHISPER_RATE
    if seconds > max_seconds:
        raise InvalidInput(field, f"{seconds:.1f} s of audio; at most {max_seconds:g} s (voice.max_audio_s)")
    return np.asarray(samples, dtype=np.float32)  # no copy when it is float32 already


def to_pcm16(samples: np.ndarray) -> bytes:
    """float32 [-1, 1] -> little-endian signed 16-bit PCM bytes."""
    pcm: bytes = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return pcm


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte RIFF/WAVE header for mono 16-bit PCM.

    ``data_bytes`` None writes 0xFFFFFFFF sizes, the convention for a stream whose length is not known yet
    (players read to the end; OpenAI's streamed wav does the same).
    """
    size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
                                                                          sample_rate * 2, 2, 16)
            + b"data" + struct.pack("<I", size))


def to_wav(samples: np.ndarray, sample_rate: int) -> bytes:
    """A complete mono 16-bit wav file."""
    pcm = to_pcm16(samples)
    return wav_header(sample_rate, len(pcm)) + pcm


def sentences(text: str) -> list[str]:
    """Split ``text`` after sentence punctuation or line breaks; empty pieces dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def split_complete(buffer: str) -> tuple[list[str], str]:
    """Complete sentences at the front of a growing ``buffer``, and the unfinished rest."""
    parts = _SENTENCE_END.split(buffer)
    if len(parts) == 1:
        return [], buffer
    return [p.strip() for p in parts[:-1] if p.strip()], parts[-1]
