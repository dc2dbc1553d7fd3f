"""The console's Voice page in a real browser: a WAV file as the microphone input, faster-whisper hears it, the
router answers (a fake Ollama speaking its real wire format), Kokoro speaks the answer sentence by sentence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chiffon.servers.voice.client import HostdClient
from chiffon.servers.voice.service import VoiceService
from chiffon.shared.runtime import Runtime
from tests.console.helpers import BROWSER_ARGS, CHROMIUM, PASSWORD, log_in, needs_chromium, running_console
from tests.llm.fakes import FakeState, ollama_app, serve_app

playwright = pytest.importorskip("playwright.async_api", reason="the console tests need playwright (test group)")
pytestmark = needs_chromium
REPLY = "Uptime Kuma is deployed on the east server. The portals are in its config."


@pytest.fixture(scope="module")
def voice_console(home: Path, targets: Path, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = FakeState(reply=lambda msgs: REPLY)
    with serve_app(ollama_app(state)) as url:
        llm = {"backends": {"ollama": {"kind": "ollama", "url": url, "slots": 2, "timeout_s": 30}},
               "tiers": {"quick": {"backend": "ollama", "model": "qwen2.5:0.5b", "context_window": 8192}}}
        with running_console(home, targets, repo, tmp_path_factory.mktemp("voice-console") / "console.log",
                             CHIFFON_LLM=json.dumps(llm)) as base:
            yield base


async def test_voice_turn_from_a_wav_file(voice_console: str, rt: Runtime, tmp_path: Path) -> None:
    speaker = VoiceService(rt.settings, HostdClient(rt.settings), None, rt.store)  # engines in this process
    try:
        question = await speaker.speak("Deploy Uptime Kuma on the east server.")
    finally:
        await speaker.hostd.aclose()
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 1100})
        try:
            await log_in(page, voice_console, "alice", PASSWORD)
            await page.get_by_role("tab", name="Voice").click()
            await page.locator("#voice-in").get_by_role("button", name="Upload file").click()  # the file, as the mic
            await page.locator("#voice-in input[type=file]").set_input_files(question.path)
            await page.locator("#voice-send").click()
            heard = page.locator("#voice-heard").get_by_role("textbox")
            reply = page.locator("#voice-reply").get_by_role("textbox")
            await page.locator("#voice-timings").get_by_text("total_s").wait_for(timeout=180_000)
            assert "kuma" in (await heard.input_value()).lower()
            assert await reply.input_value() == REPLY
            timings = await page.locator("#voice-timings").inner_text()
            assert "stt_s" in timings and "tts_first_audio_s" in timings
            assert await page.locator("#voice-out audio, #voice-out [data-testid=waveform-output]").count() > 0
        finally:
            await page.screenshot(path=str(tmp_path / "voice.png"), full_page=True)
            await browser.close()
