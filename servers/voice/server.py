"""MCP server ``chiffon-voice``: transcribe, speak, converse (a whole voice turn with timings), voices.

Thin by design: the models run in chiffon-hostd on the host that has the
hardware (``hostd.url``), or in this process when no daemon is configured.
"""

from __future__ import annotations

from typing import Any

from fastmcp import FastMCP
from fastmcp.tools import ToolResult
from mcp_types import ResourceLink, TextContent, ToolAnnotations
from pydantic import Field

from chiffon.servers.voice.service import Speech, Transcription, Turn, VoiceService
from chiffon.shared.mcp import ChiffonErrors

READS = ToolAnnotations(readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False)
MAKES_AUDIO = ToolAnnotations(readOnlyHint=False, destructiveHint=False, idempotentHint=False, openWorldHint=False)


def _with_audio(result: Turn | Speech) -> ToolResult:
    """Structured result plus a resource link to the wav file, so clients can fetch or play it."""
    speech = result if isinstance(result, Speech) else result.audio
    content: list[Any] = [TextContent(type="text", text=result.model_dump_json())]
    if speech is not None:
        content.append(ResourceLink(type="resource_link", name=speech.path.rsplit("/", 1)[-1], uri=speech.uri,
                                    mime_type="audio/wav", description=f"{speech.duration_s:.1f} s, voice {speech.voice}"))
    return ToolResult(content=content, structured_content=result.model_dump(mode="json"))


def create_voice_server(svc: VoiceService) -> FastMCP:
    """The ``chiffon-voice`` server over ``svc``."""
    mcp = FastMCP(
        "chiffon-voice",
        instructions=(
            "Speech for the homelab assistant. transcribe turns audio (a file path or base64) into text; speak turns "
            "text into a wav file; converse runs a whole voice turn (speech -> LLM with the session's history -> "
            "speech) and reports the time of each stage; voices lists the voices."
        ),
        mask_error_details=True,
    )
    mcp.add_middleware(ChiffonErrors())

    @mcp.tool(annotations=READS)
    async def transcribe(
        audio: str = Field(description="Path of an audio file (wav, flac, mp3, ogg, webm, m4a) or its base64."),
        language: str | None = Field(None, description="ISO 639-1 code, e.g. en; default: detect (en for *.en models)."),
    ) -> Transcription:
        """Speech to text with faster-whisper: text (empty for silence), language, segments, duration, real-time factor."""
        return await svc.transcribe(audio, language)

    @mcp.tool(annotations=MAKES_AUDIO, output_schema=Speech.model_json_schema())
    async def speak(
        text: str = Field(description="What to say (at most voice.max_tts_chars characters)."),
        voice: str | None = Field(None, description="A voice from voices(); default: the host's default voice."),
        speed: float = Field(1.0, description="0.25 to 4.0."),
        engine: str | None = Field(None, description="kokoro or piper; default: voice.tts_engine."),
    ) -> ToolResult:
        """Text to speech: writes a wav file and returns it as a resource link with its duration."""
        return _with_audio(await svc.speak(text, voice, speed, engine))

    @mcp.tool(annotations=MAKES_AUDIO, output_schema=Turn.model_json_schema())
    async def converse(
        audio: str = Field(description="The user's speech: a file path or base64 audio."),
        session_id: str = Field(description="Conversation id; its history is the LLM's context."),
        voice: str | None = Field(None, description="Voice of the reply."),
        max_tokens: int = Field(200, ge=1, le=2000, description="Longest reply, tokens."),
    ) -> ToolResult:
        """One voice turn: transcribe -> LLM (with the session's history) -> speak, sentence by sentence.

        Returns transcript, reply, the reply's wav and timings: STT, LLM time to first token, first audio, total.
        """
        return _with_audio(await svc.converse(audio, session_id, voice, max_tokens))

    @mcp.tool(annotations=READS)
    async def voices() -> dict[str, Any]:
        """Voices per TTS engine on the voice host, and the default engine."""
        return await svc.hostd.voices()

    return mcp
