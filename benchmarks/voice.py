"""Voice: Whisper through chiffon-hostd against faster-whisper directly; streamed TTS; round-trip WER.

In one run, with the models PyPI packages carry (Whisper tiny.en, Kokoro v1.0 int8):

(a) each homelab command is spoken by Kokoro, then transcribed ``--rounds`` times both
    directly (``WhisperModel.transcribe`` on the wav, same prompt and beam size) and
    through a ``chiffon-hostd`` subprocess's ``/v1/audio/transcriptions``, alternating;
    ``stt_rtf_* = processing seconds / audio seconds`` summed over the clips, and
    ``stt_overhead_ratio = stt_rtf_chiffon / stt_rtf_direct``;
(b) a three-sentence reply: seconds to the first PCM bytes of hostd's streamed
    ``/v1/audio/speech`` against seconds for Kokoro to synthesise the whole reply at once
    (``first_audio_ratio`` = first / whole; medians of ``--rounds``);
(c) ``wer``: word error rate (jiwer) of the round trip, text -> hostd speech -> hostd text.

Prints one JSON line. Targets: stt_overhead_ratio <= 1.10, first_audio_ratio <= 0.5, wer <= 0.20.

    uv run --group test python benchmarks/voice.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import jiwer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.servers.hostd import models  # noqa: E402
from chiffon.servers.hostd.audio import WHISPER_RATE, decode  # noqa: E402
from chiffon.shared import embedded  # noqa: E402
from chiffon.shared.config import load_settings  # noqa: E402
from tests.llm.fakes import free_port  # noqa: E402
from tests.voice.conftest import COMMANDS, VOICE  # noqa: E402

REPLY = ("Uptime Kuma is running on the east server. It now watches all four portals. "
         "I will tell you if any of them goes down.")
TARGETS = {"stt_overhead_ratio": 1.10, "first_audio_ratio": 0.5, "wer": 0.20}


def start_hostd(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).parent / "chiffon-hostd"), "--port", str(port)],
                            env={**os.environ, "CHIFFON_HOME": str(home)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("chiffon-hostd did not start")


def main(rounds: int) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="chiffon-voice-bench-"))
    settings = load_settings(None, home=home)
    proc, url = start_hostd(home)
    http = httpx.Client(base_url=url, timeout=300)
    try:
        from faster_whisper import WhisperModel

        whisper = WhisperModel(str(models.whisper(settings, "tiny.en").paths[0]), device="cpu",  # type: ignore[union-attr]
                               compute_type=settings.voice.compute_type)
        prompt = settings.voice.vocabulary_prompt

        def speak(text: str) -> bytes:
            return http.post("/v1/audio/speech", json={"input": text, "voice": VOICE, "response_format": "wav"}).content

        def via_hostd(wav: bytes) -> tuple[float, str]:
            started = time.perf_counter()
            text = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav)},
                             data={"response_format": "text"}).text
            return time.perf_counter() - started, text

        def direct(wav: bytes) -> float:
            started = time.perf_counter()
            segments, _ = whisper.transcribe(io.BytesIO(wav), language="en", initial_prompt=prompt, beam_size=5,
                                             condition_on_previous_text=False)
            " ".join(s.text for s in segments)
            return time.perf_counter() - started

        clips = [speak(c) for c in COMMANDS]
        audio_s = sum(decode(c, max_seconds=600).size / WHISPER_RATE for c in clips)
        via_hostd(clips[0]), direct(clips[0])  # warm both: model load is not inference
        direct_s, chiffon_s, heard = [], [], []
        for _ in range(rounds):
            d = c = 0.0
            for clip in clips:
                d += direct(clip)
                took, text = via_hostd(clip)
                c += took
                heard.append(text)
            direct_s.append(d)
            chiffon_s.append(c)
        wer = jiwer.wer([jiwer.RemovePunctuation()(t.lower()) for t in COMMANDS],
                        [jiwer.RemovePunctuation()(t.lower()) for t in heard[:len(COMMANDS)]])

        from kokoro_onnx import Kokoro

        model, voices = models.kokoro(settings).paths  # type: ignore[union-attr]
        kokoro = Kokoro(str(model), str(voices))
        kokoro.create("Warm up.", voice=VOICE, lang="en-us")
        first, whole = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            with http.stream("POST", "/v1/audio/speech", json={"input": REPLY, "voice": VOICE,
                                                                "response_format": "pcm"}) as response:
                body = response.iter_bytes()
                for chunk in body:
                    if chunk:
                        first.append(time.perf_counter() - started)
                        break
                for _ in body:  # drain the rest of the reply
                    pass
            started = time.perf_counter()
            kokoro.create(REPLY, voice=VOICE, lang="en-us")
            whole.append(time.perf_counter() - started)
    finally:
        http.close()
        proc.terminate()
        proc.wait(15)
        for entry in embedded.find():  # hostd's heartbeats started an embedded Redis in this home: stop it
            if entry.home == home.resolve():
                embedded.stop(entry)
    rtf_direct = statistics.median(direct_s) / audio_s
    rtf_chiffon = statistics.median(chiffon_s) / audio_s
    result: dict[str, object] = {
        "clips": len(clips), "audio_s": round(audio_s, 2), "rounds": rounds,
        "stt_rtf_direct": round(rtf_direct, 4), "stt_rtf_chiffon": round(rtf_chiffon, 4),
        "stt_overhead_ratio": round(rtf_chiffon / rtf_direct, 3),
        "tts_first_audio_s": round(statistics.median(first), 3), "tts_whole_s": round(statistics.median(whole), 3),
        "first_audio_ratio": round(statistics.median(first) / statistics.median(whole), 3),
        "wer": round(wer, 3), "vocabulary_prompt": bool(prompt),
    }
    result["meets_targets"] = all(result[k] <= v for k, v in TARGETS.items())  # type: ignore[operator]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(main(parser.parse_args().rounds)))
