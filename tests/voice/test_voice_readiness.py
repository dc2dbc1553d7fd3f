"""Whether a voice turn is possible, and what to fix when not: the console's Voice status (servers/voice/readiness).
Real in-process hostd (models from the PyPI packages), a closed port for a hostd that is down."""

from __future__ import annotations

import base64
import io
import wave

from chiffon.orchestrator.console.voice_page import sentence_url, status_markdown
from chiffon.servers.voice import readiness
from chiffon.servers.voice.client import HostdClient
from chiffon.shared.config import LLMTierConfig, Settings
from tests.llm.fakes import free_port


def with_tier(settings: Settings) -> Settings:
    llm = settings.llm.model_copy(update={"tiers": {"quick": LLMTierConfig(backend="ollama", model="qwen2.5:0.5b")}})
    return settings.model_copy(update={"llm": llm})


async def test_ready_with_a_tier_and_the_in_process_engines(settings: Settings) -> None:
    got = await readiness.check(with_tier(settings), None, None)
    assert got.ready, got
    assert [p.name for p in got.parts] == ["llm", "hostd", "engines"]
    assert "quick (ollama qwen2.5:0.5b)" in got.parts[0].detail
    assert "in this process" in got.parts[1].detail and "kokoro" in got.parts[2].detail
    assert status_markdown(got).startswith("**Voice is ready.**")


async def test_no_tier_is_named_with_its_fix(settings: Settings) -> None:
    got = await readiness.check(settings.model_copy(update={"llm": settings.llm.model_copy(update={"tiers": {}})}),
                                None, None)
    assert not got.ready
    assert [p.name for p in got.missing()] == ["llm"]
    assert "llm.tiers" in (got.missing()[0].fix or "")


async def test_a_hostd_that_is_down_is_named_with_its_url_and_fix(settings: Settings) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    down = with_tier(settings.model_copy(update={"hostd": settings.hostd.model_copy(update={"url": url})}))
    client = HostdClient(down)
    try:
        got = await readiness.check(down, client, None)
    finally:
        await client.aclose()
    assert not got.ready
    assert [p.name for p in got.missing()] == ["hostd", "engines"]
    assert url in got.missing()[0].detail and "chiffon hostd" in (got.missing()[0].fix or "")
    text = status_markdown(got)
    assert text.startswith("**Voice is not available here.**") and "- **hostd**" in text and "Fix:" in text


def test_a_sentence_becomes_a_playable_wav_data_url() -> None:
    pcm = (b"\x01\x00\xff\x7f") * 1200
    url = sentence_url(pcm, 24_000, "t-1")
    head, _, fragment = url.partition("#")
    assert head.startswith("data:audio/wav;base64,") and fragment == "t-1"
    with wave.open(io.BytesIO(base64.b64decode(head.split(",", 1)[1]))) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (24_000, 1, 2)
        assert wav.readframes(wav.getnframes()) == pcm
