"""A whole voice turn: Kokoro speaks the user, faster-whisper hears it, the tiny llama.cpp model answers,
Kokoro speaks the answer. The reply is noise (random weights); the test checks the pipeline, timings and audio."""

from __future__ import annotations

import wave
from pathlib import Path

from chiffon.servers.llm.router import Router
from chiffon.servers.memory import history
from chiffon.servers.voice.client import HostdClient
from chiffon.servers.voice.service import VoiceService
from chiffon.shared.runtime import Runtime


async def test_converse_transcribes_answers_and_speaks_with_timings(router: Router, rt: Runtime) -> None:
    voice = VoiceService(rt.settings, HostdClient(rt.settings), router, rt.store)  # engines in this process
    try:
        question = await voice.speak("Deploy Uptime Kuma on the east server.", voice="jm_kumo")
        turn = await voice.converse(question.path, "voice-s1", voice="jm_kumo", max_tokens=24)
        again = await voice.converse(question.path, "voice-s1", voice="jm_kumo", max_tokens=8)
    finally:
        await voice.hostd.aclose()
    stored = await history.history(rt.store, "voice-s1")
    t = turn.timings
    assert "kuma" in turn.transcript.lower() and turn.answered_by is not None
    assert t.stt_s > 0 and t.llm_ttft_s is not None and t.llm_ttft_s <= t.llm_s and t.total_s >= t.stt_s + t.llm_s
    if turn.audio is not None:  # noise may contain no pronounceable word
        with wave.open(turn.audio.path) as w:
            assert w.getframerate() == 24000 and w.getnframes() > 0
        assert t.tts_first_audio_s is not None and t.tts_first_audio_s <= t.total_s
        assert Path(turn.audio.path).stat().st_size > 44
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[0].content == turn.transcript and again.session_id == "voice-s1"
