"""chiffon-hostd with the OpenAI Python SDK as its client: real Kokoro, Piper and faster-whisper."""

from __future__ import annotations

import io
import subprocess
import wave

import httpx
import jiwer
import numpy as np
import openai
import pytest

from chiffon.servers.hostd.app import create_app
from chiffon.servers.hostd.audio import to_wav
from chiffon.shared.config import load_settings
from tests.voice.conftest import BIN, COMMANDS, MAX_AUDIO_S, MAX_TTS_CHARS, VOICE


@pytest.fixture(scope="module")
def sdk(hostd: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{hostd}/v1", api_key="unused-on-loopback", max_retries=0)


def spoken(sdk: openai.OpenAI, text: str, **kwargs: object) -> bytes:
    return sdk.audio.speech.create(model="tts-1", voice=VOICE, input=text, response_format="wav", **kwargs).read()  # type: ignore[arg-type]


def heard(sdk: openai.OpenAI, wav: bytes, name: str = "speech.wav") -> str:
    return sdk.audio.transcriptions.create(model="whisper-1", file=(name, wav), response_format="text")  # type: ignore[return-value]


def normalise(text: str) -> str:
    return jiwer.RemovePunctuation()(text.lower()).strip()


def test_round_trip_word_error_rate(sdk: openai.OpenAI) -> None:
    # Whisper gets hostd's default vocabulary prompt (voice.vocabulary_prompt: homelab names and verbs);
    # without it tiny.en writes "PostgreSQL" for Postgres and "uptime" in lower case more often.
    said = [heard(sdk, spoken(sdk, command)) for command in COMMANDS]
    wer = jiwer.wer([normalise(c) for c in COMMANDS], [normalise(s) for s in said])
    assert wer <= 0.20, f"WER {wer:.2f}: {said}"


def test_verbose_json_has_segments_duration_and_real_time_factor(sdk: openai.OpenAI) -> None:
    result = sdk.audio.transcriptions.create(model="whisper-1", file=("a.wav", spoken(sdk, COMMANDS[0])),
                                             response_format="verbose_json")
    extra = result.model_extra or {}
    assert "kuma" in result.text.lower() and result.language == "en" and 1.0 < result.duration < 6.0
    assert result.segments and result.segments[0].end > result.segments[0].start
    assert 0 < extra["rtf"] < 5 and extra["model"] == "tiny.en"


def test_speech_streams_sentence_by_sentence(sdk: openai.OpenAI) -> None:
    text = "Redis is back up. Uptime Kuma reports every portal as healthy. The backup finished an hour ago."
    with sdk.audio.speech.with_streaming_response.create(model="kokoro", voice=VOICE, input=text,
                                                         response_format="pcm") as response:
        assert response.headers["x-sample-rate"] == "24000"
        chunks = [c for c in response.iter_bytes() if c]
    pcm = b"".join(chunks)
    assert len(chunks) >= 3 and len(pcm) / 2 / 24000 > 3.0  # one chunk per sentence at least, > 3 s of audio


def test_piper_speaks_too(sdk: openai.OpenAI) -> None:
    wav = sdk.audio.speech.create(model="piper", voice="en_US-joe-medium", input="Restart Redis.",  # type: ignore[arg-type]
                                  response_format="wav").read()
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getframerate() == 22050 and w.getnchannels() == 1
    assert "redis" in heard(sdk, wav).lower()


def test_silence_is_an_empty_transcript_and_other_rates_are_resampled(sdk: openai.OpenAI) -> None:
    silence = to_wav(np.zeros(16000 * 2, np.float32), 16000)
    speech = spoken(sdk, COMMANDS[0])
    with wave.open(io.BytesIO(speech)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32767
    at_8k = to_wav(samples[::3], 8000)  # 24 kHz -> 8 kHz by decimation: a telephone-rate recording
    assert heard(sdk, silence).strip() == ""
    assert "kuma" in heard(sdk, at_8k).lower()


@pytest.mark.parametrize(("call", "param", "needle"), [
    (lambda s: heard(s, b"this is not audio at all" * 40), "file", "wav, flac, mp3"),
    (lambda s: heard(s, to_wav(np.zeros(16000 * (MAX_AUDIO_S + 5), np.float32), 16000)), "file", "voice.max_audio_s"),
    (lambda s: s.audio.transcriptions.create(model="large-v9", file=("a.wav", b"x")), "model", "tiny.en"),
    (lambda s: spoken(s, ""), "input", "empty"),
    (lambda s: spoken(s, "word " * MAX_TTS_CHARS), "input", "voice.max_tts_chars"),
    (lambda s: s.audio.speech.create(model="tts-1", voice="alloy", input="hi"), "voice", "jm_kumo"),
    (lambda s: s.audio.speech.create(model="tts-1", voice=VOICE, input="hi", response_format="mp3"),
     "response_format", "wav, pcm"),
    (lambda s: s.audio.speech.create(model="tts-1", voice=VOICE, input="hi", speed=9.0), "speed", "0.25"),
])
def test_bad_input_is_a_400_that_says_what_is_allowed(sdk: openai.OpenAI, call, param: str, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(openai.BadRequestError) as info:
        call(sdk)
    assert info.value.body["param"] == param and needle in info.value.body["message"]  # type: ignore[index]


def test_health_and_models(hostd: str) -> None:
    health = httpx.get(f"{hostd}/health").json()
    models = {m["id"] for m in httpx.get(f"{hostd}/v1/models").json()["data"]}
    assert health["status"] == "ok" and health["service"] == "chiffon-hostd" and health["issues"] == []
    assert {"tiny.en", "en_US-joe-medium", "whisper-1", "tts-1"} <= models


async def test_a_token_guards_everything_but_health(home) -> None:  # type: ignore[no-untyped-def]
    settings = load_settings(None, home=home, hostd={"token": "s3cret"})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://h") as c:
        denied = await c.get("/v1/models")
        allowed = await c.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
        health = await c.get("/health")
    assert denied.status_code == 401 and denied.json()["error"]["type"] == "authentication_error"
    assert allowed.status_code == 200 and health.status_code == 200


def test_binding_beyond_loopback_needs_a_token(hostd_env: dict[str, str]) -> None:
    proc = subprocess.run([str(BIN / "chiffon-hostd"), "--bind", "0.0.0.0", "--port", "1"], env=hostd_env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "CHIFFON_HOSTD__TOKEN" in proc.stderr


async def test_health_says_degraded_or_failed_when_an_engine_or_the_heartbeat_fails(home) -> None:  # type: ignore[no-untyped-def]
    from chiffon.servers.hostd.heartbeat import Heartbeat
    from chiffon.servers.hostd.pool import EnginePool

    class NoGpus:  # /health reads no GPU
        kind = "none"

        def read(self) -> list[object]:
            return []

    settings = load_settings(None, home=home)
    pool = EnginePool(settings)
    beat = Heartbeat(settings, NoGpus(), None)  # type: ignore[arg-type]
    app = create_app(settings, pool, beat)

    def broken() -> None:
        raise RuntimeError("CUDA driver version is insufficient")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://h") as c:
        assert (await c.get("/health")).json()["status"] == "ok"
        with pytest.raises(RuntimeError):
            await pool._get("stt:large-v3", broken)  # a model this host does not default to
        degraded = (await c.get("/health")).json()
        assert degraded["status"] == "degraded"
        assert degraded["issues"] == ["stt:large-v3 failed to load: RuntimeError: CUDA driver version is insufficient"]
        beat.failure = "ConnectionError: Redis refused the connection"
        assert "heartbeat not published: ConnectionError" in " ".join((await c.get("/health")).json()["issues"])
        with pytest.raises(RuntimeError):
            await pool._get(f"tts:{settings.voice.tts_engine}", broken)  # the default voice cannot speak
        assert (await c.get("/health")).json()["status"] == "failed"
        await pool._get("stt:large-v3", lambda: "an engine")  # it loads again: no longer an issue
        assert not any("large-v3" in i for i in (await c.get("/health")).json()["issues"])
