"""The console's Voice page in a real browser: a WAV file as the microphone input, faster-whisper hears it, the
router answers (a fake Ollama speaking its real wire format), Kokoro speaks the answer sentence by sentence and
the browser plays it; and, on a console without an LLM tier whose hostd is down, the status that says so.

Screenshots go to each test's tmp dir; with CHIFFON_SCREENSHOTS_TO_DOCS=1 the turn's also to docs/img/console-voice.png.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chiffon.servers.voice.client import HostdClient
from chiffon.servers.voice.service import VoiceService
from chiffon.shared.runtime import Runtime
from tests.conftest import CHECKOUT
from tests.console.helpers import BROWSER_ARGS, CHROMIUM, PASSWORD, free_port, log_in, needs_chromium, running_console
from tests.llm.fakes import FakeState, ollama_app, serve_app

playwright = pytest.importorskip("playwright.async_api", reason="the console tests need playwright (test group)")
pytestmark = needs_chromium
REPLY = "Uptime Kuma is deployed on the east server. The portals are in its config."
DOCS_IMG = CHECKOUT / "docs" / "img"


@pytest.fixture(scope="module")
def voice_console(home: Path, targets: Path, repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    state = FakeState(reply=lambda msgs: REPLY)
    with serve_app(ollama_app(state)) as url:
        llm = {"backends": {"ollama": {"kind": "ollama", "url": url, "slots": 2, "timeout_s": 30}},
               "tiers": {"quick": {"backend": "ollama", "model": "qwen2.5:0.5b", "context_window": 8192}}}
        with running_console(home, targets, repo, tmp_path_factory.mktemp("voice-console") / "console.log",
                             CHIFFON_LLM=json.dumps(llm)) as base:
            yield base


async def open_voice(browser: Any, base: str) -> Any:
    page = await browser.new_page(viewport={"width": 1280, "height": 1100})
    await log_in(page, base, "alice", PASSWORD)
    await page.get_by_role("tab", name="Voice").click()
    return page


async def test_voice_turn_from_a_wav_file(voice_console: str, rt: Runtime, tmp_path: Path) -> None:
    speaker = VoiceService(rt.settings, HostdClient(rt.settings), None, rt.store)  # engines in this process
    try:
        question = await speaker.speak("Deploy Uptime Kuma on the east server.")
    finally:
        await speaker.hostd.aclose()
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = await open_voice(browser, voice_console)
        try:
            await page.locator("#voice-status").get_by_text("Voice is ready").wait_for(timeout=60_000)
            await page.locator("#voice-in").get_by_role("button", name="Upload file").click()  # the file, as the mic
            await page.locator("#voice-in input[type=file]").set_input_files(question.path)
            await page.locator("#voice-send").click()
            await page.locator("#voice-timings").get_by_text("total_s").wait_for(timeout=180_000)
            history = page.locator("#voice-history")
            said = await history.inner_text()
            assert "kuma" in said.lower() and REPLY in said  # the transcript, then the reply's text
            assert await history.locator("audio").count() >= 2  # the user's recording and the reply, playable
            player = page.locator("#voice-player [data-first-play]")
            await player.wait_for(state="attached", timeout=30_000)  # the first sentence played in the browser
            await page.wait_for_function(  # both sentences, one after the other
                "() => Number(document.querySelector('#voice-player [data-played]')?.dataset.played) >= 2",
                timeout=60_000)
            timings = await page.locator("#voice-timings").inner_text()
            assert "stt_s" in timings and "tts_first_audio_s" in timings
        finally:
            await page.screenshot(path=str(tmp_path / "console-voice.png"), full_page=True)
            if os.environ.get("CHIFFON_SCREENSHOTS_TO_DOCS") == "1":
                await page.screenshot(path=str(DOCS_IMG / "console-voice.png"), full_page=True)
            await browser.close()


async def test_status_names_what_is_missing_when_voice_is_down(home: Path, targets: Path, repo: Path,
                                                               tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with running_console(home, targets, repo, tmp_path / "console.log", CHIFFON_HOSTD__URL=down) as base:
        async with playwright.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = await open_voice(browser, base)
            try:
                status = page.locator("#voice-status")
                await status.get_by_text("Voice is not available here").wait_for(timeout=60_000)
                text = await status.inner_text()
                assert "llm: no LLM tier is configured" in text and "llm.tiers" in text
                assert f"hostd: chiffon-hostd {down}" in text and "chiffon hostd" in text
                assert not await page.locator("#voice-send").is_visible()  # no push-to-talk without its parts
            finally:
                await page.screenshot(path=str(tmp_path / "console-voice-down.png"), full_page=True)
                await browser.close()
