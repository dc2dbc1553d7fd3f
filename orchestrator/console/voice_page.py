"""The console's Voice page: push-to-talk through the voice service, the reply streamed back sentence by
sentence."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr
import numpy as np

from chiffon.orchestrator.console.auth import who
from chiffon.shared.errors import ChiffonError


def voice_page(voice: Any) -> None:
    """Push-to-talk: the microphone (or a file) → transcript → the router with this browser session's history →
    speech streamed back sentence by sentence, with per-stage timings."""
    mic = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Speak, then send", elem_id="voice-in")
    send = gr.Button("Send", variant="primary", elem_id="voice-send")
    heard = gr.Textbox(label="You said", interactive=False, elem_id="voice-heard")
    reply = gr.Textbox(label="Reply", interactive=False, elem_id="voice-reply")
    # Gradio encodes a streamed reply with ffmpeg; without it the reply plays once it is whole.
    streaming = shutil.which("ffmpeg") is not None
    if not streaming:
        gr.Markdown("ffmpeg is not installed: the reply plays when it is whole, not sentence by sentence "
                    "(`apt-get install ffmpeg`).")
    spoken = gr.Audio(label="Spoken reply", streaming=streaming, autoplay=True, interactive=False,
                      type="filepath", elem_id="voice-out")
    timings = gr.JSON(label="Timings (s)", elem_id="voice-timings")
    session = gr.State(lambda: f"console-{secrets.token_hex(6)}")

    async def talk(path: str | None, session_id: str, request: gr.Request) -> AsyncIterator[tuple[Any, ...]]:
        who(request)
        if not path:
            yield "", "Record or upload something first.", None, {}
            return
        chunks: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()
        started = time.perf_counter()
        first: dict[str, float] = {}

        async def on_audio(pcm: bytes, rate: int) -> None:
            first.setdefault("first_audio_s", round(time.perf_counter() - started, 3))
            await chunks.put((pcm, rate))

        async def turn() -> Any:
            try:
                return await voice.converse(path, session_id, on_audio=on_audio)
            finally:
                await chunks.put(None)

        running = asyncio.create_task(turn())
        while (item := await chunks.get()) is not None:
            pcm, rate = item
            if streaming:
                yield gr.update(), gr.update(), (rate, np.frombuffer(pcm, dtype=np.int16)), gr.update()
        try:
            done = await running
        except ChiffonError as exc:
            yield "", f"Refused: {exc}", None, {}
            return
        whole = done.audio.path if done.audio is not None and not streaming else gr.update()
        yield done.transcript, done.reply, whole, {**done.timings.model_dump(), **first}

    send.click(talk, [mic, session], [heard, reply, spoken, timings])
