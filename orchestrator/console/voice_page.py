"""The console's Voice page: push-to-talk through the voice service, each turn kept as text and audio, the reply
played sentence by sentence as it is synthesised.

How the first sentence reaches the ear: ``VoiceService.converse`` hands each sentence's PCM over as soon as Kokoro
has it; this page wraps it in a WAV and sends it to the browser in the next event-stream message, as a ``data:``
URL in the value of a small player (a ``gr.HTML`` with its own script), which queues and plays the sentences in
order with the browser's own WAV decoder. Gradio's streamed ``gr.Audio`` was not used: it re-encodes every chunk
to AAC through an ffmpeg process and serves it as HLS, and on the 2-core test machine only the first 1.5 s of a
3 s sentence came out of the encoder in the 0.1 s Gradio waits for it; the rest waited for the next sentence
(10-15 s later), and the browser polled the playlist about once a second. The player needs no ffmpeg.

Before a turn the page says whether one is possible (:mod:`chiffon.servers.voice.readiness`): the LLM tier,
chiffon-hostd, the speech engines, with the fix for each missing part.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import gradio as gr

from chiffon.orchestrator.console.auth import who
from chiffon.servers.hostd.audio import wav_header
from chiffon.servers.voice import readiness
from chiffon.shared.config import Settings
from chiffon.shared.errors import ChiffonError

if TYPE_CHECKING:
    from chiffon.servers.voice.service import Turn, VoiceService

# The player's script: gr.HTML runs it once with `element` (its node), `props` and `watch`. Each new value is a
# sentence's WAV as a data: URL (with a #turn-n fragment, so that two equal sentences still differ); they play one
# after another. data-first-play (performance.now() ms of the first sentence's "playing") and data-played (how
# many finished) are for the browser tests and benchmarks/console.py.
PLAYER_JS = """
const queue = [];
let current = null, played = 0;
const say = (text) => { const s = element.querySelector('.voice-player-state'); if (s) s.textContent = text; };
function next() {
  if (current || !queue.length) { if (!current) say(played ? `played ${played} sentence(s)` : 'idle'); return; }
  current = new Audio(queue.shift());
  current.addEventListener('playing', () => {
    if (!element.dataset.firstPlay) element.dataset.firstPlay = String(performance.now());
    say(`speaking sentence ${played + 1}`);
  }, {once: true});
  const done = () => { current = null; element.dataset.played = String(++played); next(); };
  current.addEventListener('ended', done);
  current.addEventListener('error', done);
  current.play().catch(done);
}
element.addEventListener('click', (event) => {
  if (!event.target.closest('.voice-stop')) return;
  queue.length = 0;
  if (current) { current.pause(); current = null; }
  say('stopped');
});
watch('value', () => {
  const v = props.value;
  if (typeof v !== 'string' || !v.startsWith('data:audio/')) return;
  if (v.endsWith('-1')) delete element.dataset.firstPlay;  // a new turn's first sentence
  queue.push(v);
  next();
});
"""
PLAYER_HTML = ("<div class='voice-player'><span class='voice-player-state'>idle</span> "
               "<button class='voice-stop' type='button'>Stop</button></div>")
HINT = ("Record with the microphone: stopping sends it (or upload a file, then **Send**). The reply is spoken "
        "sentence by sentence as it is synthesised; every turn stays below with its text and audio.")


def status_markdown(ready: readiness.Readiness) -> str:
    """The status line: ``ready`` and what each part is, or what is missing and the fix for each."""
    if ready.ready:
        return "**Voice is ready.** " + "; ".join(p.detail for p in ready.parts) + "."
    lines = ["**Voice is not available here.** Missing:"]
    lines += [f"- **{p.name}**: {p.detail.rstrip('.')}. Fix: {(p.fix or '').rstrip('.')}." for p in ready.missing()]
    return "\n".join(lines)


def sentence_url(pcm: bytes, rate: int, tag: str) -> str:
    """16-bit mono ``pcm`` at ``rate`` Hz as a ``data:audio/wav;base64,...#tag`` URL (44 bytes of header)."""
    return "data:audio/wav;base64," + base64.b64encode(wav_header(rate, len(pcm)) + pcm).decode() + "#" + tag


def _audio(path: str) -> dict[str, Any]:
    return {"path": path, "mime_type": "audio/wav"}


def voice_page(voice: VoiceService | None, settings: Settings) -> None:
    """Push-to-talk: the microphone (or a file) → transcript → the router with this browser session's history →
    speech played sentence by sentence; a chat of every turn (the user's words and recording, the reply's text
    and audio) and the last turn's per-stage timings. ``voice`` None (no LLM tier): the page shows only what is
    missing, checked again on each page load and on "Check again"."""
    with gr.Row(equal_height=True):
        status = gr.Markdown("Checking the voice assistant's parts…", elem_id="voice-status")
        recheck = gr.Button("Check again", size="sm", scale=0, min_width=120, elem_id="voice-recheck")
    with gr.Column(visible=False, elem_id="voice-panel") as panel:
        gr.Markdown(HINT)
        history = gr.Chatbot(label="Conversation", elem_id="voice-history", height=420, buttons=["copy"])
        player = gr.HTML("", html_template=PLAYER_HTML, js_on_load=PLAYER_JS, elem_id="voice-player")
        with gr.Row(equal_height=True):
            mic = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speak, then send", scale=4,
                           elem_id="voice-in")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="voice-send")
        note = gr.Markdown("", elem_id="voice-note")
        timings = gr.JSON(label="Timings of the last turn (s)", elem_id="voice-timings")
    session = gr.State(lambda: f"console-{secrets.token_hex(6)}")

    async def check(request: gr.Request) -> tuple[str, Any]:
        who(request)
        ready = await readiness.check(settings, voice.hostd if voice is not None else None,
                                      voice.router if voice is not None else None)
        return status_markdown(ready), gr.Column(visible=ready.ready and voice is not None)

    async def talk(path: str | None, session_id: str, chat: list[Any] | None,
                   request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        who(request)
        if voice is None:
            yield gr.skip(), gr.skip(), "No LLM tier: see the status above.", gr.skip()
            return
        if not path:
            yield gr.skip(), gr.skip(), "Record or upload something first.", gr.skip()
            return
        async for update in _turn(voice, path, session_id, list(chat or [])):
            yield update

    recheck.click(check, None, [status, panel], show_progress="minimal")
    gr.context.Context.root_block.load(check, None, [status, panel])  # type: ignore[union-attr]
    # No progress overlay: the chat and the player say how far the turn is.
    for event in (send.click, mic.stop_recording):  # push-to-talk: stopping the recording sends it
        event(talk, [mic, session, history], [history, player, note, timings], show_progress="hidden")


async def _turn(voice: VoiceService, path: str, session_id: str,
                chat: list[Any]) -> AsyncIterator[tuple[Any, Any, Any, Any]]:
    """One turn as page updates ``(chat, player, note, timings)``: the user's line (then its transcript), the
    reply's sentences as they are spoken, then the turn's audio and timings."""
    events: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
    tag = secrets.token_hex(4)
    count = 0

    async def on_heard(text: str) -> None:
        await events.put(("heard", text))

    async def on_audio(pcm: bytes, rate: int, sentence: str) -> None:
        nonlocal count
        count += 1
        await events.put(("audio", sentence))
        await events.put(("url", sentence_url(pcm, rate, f"{tag}-{count}")))

    async def run() -> Turn:
        try:
            return await voice.converse(path, session_id, on_heard=on_heard, on_audio=on_audio)
        finally:
            await events.put(None)

    user = {"role": "user", "content": "(transcribing…)"}
    reply = {"role": "assistant", "content": ""}
    chat += [user]
    yield chat, gr.skip(), "Listening…", None  # the last turn's timings go: this turn's come at its end
    running = asyncio.create_task(run())
    while (event := await events.get()) is not None:
        kind, value = event
        if kind == "heard":
            user["content"] = value or "(silence)"
            chat += [reply]
            yield chat, gr.skip(), "Thinking…", gr.skip()
        elif kind == "audio":
            reply["content"] = f"{reply['content']} {value}".strip()
        else:
            yield chat, value, "Speaking…", gr.skip()
    try:
        done = await running
    except ChiffonError as exc:
        if reply in chat and not reply["content"]:
            chat.remove(reply)
        if user["content"] == "(transcribing…)":
            user["content"] = "(not transcribed)"
        yield chat, gr.skip(), f"Refused: {exc}", gr.skip()
        return
    user["content"] = done.transcript or "(silence)"
    extra: list[dict[str, Any]] = [{"role": "user", "content": _audio(path)}]
    if done.transcript:
        reply["content"] = done.reply
        if done.audio is not None:
            extra.append({"role": "assistant", "content": _audio(done.audio.path)})
    elif reply in chat:
        chat.remove(reply)
    position = chat.index(user) + 1
    chat[position:position] = extra[:1]
    chat += extra[1:]
    note = "" if done.transcript else "Nothing was heard: try again, closer to the microphone."
    yield chat, gr.skip(), note, done.timings.model_dump()
