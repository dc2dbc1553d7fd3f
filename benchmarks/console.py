"""The console as a user meets it: `chiffon console` driven in Debian's Chromium through Playwright.

Per round, in one run (``--rounds``, medians; the spread is printed too):

* ``page_load_s``: from opening the console's URL, through the login, to the Plans page ready;
* ``approve_to_running_s``: from the click on Approve to the plan's run row reading ``running`` (queued as an
  ``infra`` task, taken by the console's in-process worker, ansible-runner started);
* ``voice_first_audio_s``: the Voice page's turn, a WAV file as the microphone: seconds from the start of the
  turn to the first sentence's speech (``tts_first_audio_s`` of the turn's timings);
* ``voice_first_audio_ratio``: seconds from the reply's first token to its first speech, over the seconds
  Kokoro takes to synthesise the whole three-sentence reply at once (warm, in this process, same run). One
  voice turn runs before the rounds: the console loads Whisper and Kokoro on its first turn.

The reply comes from a fake Ollama (tests/llm/fakes.py, the real wire format) so that it is the same three
sentences every time; speech and transcription are the real engines from the PyPI model packages.

Prints one JSON line. Target: voice_first_audio_ratio <= 0.5.

    uv run --group test python benchmarks/console.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.async_api import async_playwright  # noqa: E402

from chiffon.servers.ansible import plans  # noqa: E402
from chiffon.servers.ansible.service import AnsibleService  # noqa: E402
from chiffon.servers.voice.client import HostdClient  # noqa: E402
from chiffon.servers.voice.service import VoiceService  # noqa: E402
from chiffon.shared.config import load_settings  # noqa: E402
from chiffon.shared.runtime import open_runtime, stop_embedded  # noqa: E402
from tests.console.helpers import BROWSER_ARGS, CHROMIUM, PASSWORD, choose, log_in, running_console  # noqa: E402
from tests.llm.fakes import FakeState, ollama_app, serve_app  # noqa: E402

REPLY = ("Uptime Kuma is deployed on the east server. The existing portals are now in its config. "
         "Open port three thousand and one to see them.")
TARGET_RATIO = 0.5
ECHO = """- name: Echo a message
  hosts: ai
  gather_facts: false
  vars:
    message: default
  tasks:
    - name: Write the message
      ansible.builtin.copy:
        dest: "{{ homelab_root }}/echo.txt"
        content: "{{ message }}"
"""


def repo_copy(root: Path) -> Path:
    repo = root / "homelab-infra"
    shutil.copytree(ROOT / "examples" / "homelab-infra", repo)
    (repo / "echo-message.yml").write_text(ECHO)
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b",
           "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)
    return repo


async def page_round(page: Any, base: str) -> float:
    started = time.perf_counter()
    await log_in(page, base, "alice", PASSWORD)
    await page.locator("#plan-pick").wait_for()
    return time.perf_counter() - started


async def approve_round(page: Any, rt: Any, svc: AnsibleService) -> float:
    plan = await plans.create_plan(rt, await svc.catalog(), "echo-message.yml", extra_vars={"message": "bench"})
    await page.get_by_role("tab", name="Plans").click()
    await page.locator("#plans-refresh").click()
    await choose(page, "plan-pick", plan.id)
    await page.locator("#plan-view").get_by_text("echo-message.yml").first.wait_for()
    started = time.perf_counter()
    await page.locator("#approve").click()
    while await rt.store.pool.fetchval("SELECT status FROM runs WHERE plan_id=$1", plan.id) not in \
            ("running", "succeeded", "failed"):
        if time.perf_counter() - started > 120:
            raise TimeoutError(f"{plan.id} never started running")
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def voice_round(page: Any, wav: str) -> dict[str, float]:
    await page.get_by_role("tab", name="Voice").click()
    upload = page.locator("#voice-in").get_by_role("button", name="Upload file")
    if await upload.count():
        await upload.click()
    await page.locator("#voice-in input[type=file]").set_input_files(wav)
    await page.locator("#voice-send").click()
    await page.locator("#voice-timings").get_by_text("total_s").wait_for(timeout=300_000)
    text = await page.locator("#voice-timings").inner_text()  # the JSON viewer: keys, values, line numbers
    timings = {k: float(v) for k, v in re.findall(r'"(\w+)"\s*:\s*([0-9.]+)', text)}
    await page.locator("#voice-in").get_by_role("button", name="Clear").click()
    return timings


async def main(rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chiffon-bench-console-") as tmp:
        root = Path(tmp)
        repo, targets, home = repo_copy(root), root / "targets", root / "home"
        targets.mkdir()
        os.environ["HOMELAB_ROOT"] = str(targets)
        settings = load_settings(home=home)
        state = FakeState(reply=lambda msgs: REPLY)
        figures: dict[str, list[float]] = {"page_load_s": [], "approve_to_running_s": [], "voice_first_audio_s": [],
                                           "reply_to_first_audio_s": [], "whole_reply_tts_s": []}
        try:
            async with open_runtime(settings) as rt:
                voice = VoiceService(rt.settings, HostdClient(rt.settings), None, rt.store)
                question = await voice.speak("Deploy Uptime Kuma and add the existing portals to its config.")
                svc = AnsibleService.for_runtime(rt, repo)
                with serve_app(ollama_app(state)) as url:
                    llm = {"backends": {"ollama": {"kind": "ollama", "url": url, "slots": 2, "timeout_s": 30}},
                           "tiers": {"quick": {"backend": "ollama", "model": "qwen2.5:0.5b", "context_window": 8192}}}
                    with running_console(home, targets, repo, root / "console.log", CHIFFON_LLM=json.dumps(llm)) as base:
                        async with async_playwright() as pw:
                            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
                            warm = await browser.new_page()  # one turn first: the console loads its engines lazily
                            await log_in(warm, base, "alice", PASSWORD)
                            await voice_round(warm, question.path)
                            await warm.close()
                            for _ in range(rounds):
                                page = await browser.new_page(viewport={"width": 1280, "height": 1000})
                                figures["page_load_s"].append(await page_round(page, base))
                                figures["approve_to_running_s"].append(await approve_round(page, rt, svc))
                                turn = await voice_round(page, question.path)
                                figures["voice_first_audio_s"].append(turn["tts_first_audio_s"])
                                figures["reply_to_first_audio_s"].append(
                                    turn["tts_first_audio_s"] - turn["stt_s"] - turn["llm_ttft_s"])
                                await voice.speak(REPLY)  # warm, as the console's engine is
                                started = time.perf_counter()
                                await voice.speak(REPLY)
                                figures["whole_reply_tts_s"].append(time.perf_counter() - started)
                                await page.close()
                            await browser.close()
                await voice.hostd.aclose()
        finally:
            await stop_embedded(settings)
    med = {k: round(statistics.median(v), 3) for k, v in figures.items()}
    ratio = round(med["reply_to_first_audio_s"] / med["whole_reply_tts_s"], 3)
    return {"page_load_s": med["page_load_s"], "approve_to_running_s": med["approve_to_running_s"],
            "voice_first_audio_s": med["voice_first_audio_s"], "voice_first_audio_ratio": ratio,
            "reply_to_first_audio_s": med["reply_to_first_audio_s"], "whole_reply_tts_s": med["whole_reply_tts_s"],
            "spread": {k: [round(min(v), 3), round(max(v), 3)] for k, v in figures.items()}, "rounds": rounds,
            "targets_met": ratio <= TARGET_RATIO}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(asyncio.run(main(parser.parse_args().rounds))))
