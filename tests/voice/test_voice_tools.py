"""chiffon-voice's tools through the orchestrator (mounted as ``voice``), against a real hostd."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from fastmcp import Client
from fastmcp.exceptions import ToolError

from chiffon.orchestrator.server import create_orchestrator
from chiffon.servers.ansible.service import AnsibleService
from chiffon.servers.voice.client import HostdClient
from chiffon.servers.voice.service import VoiceService
from chiffon.shared.config import Settings
from chiffon.shared.errors import ConfigError, ServiceUnavailable
from chiffon.shared.runtime import Runtime
from tests.voice.conftest import VOICE


@pytest_asyncio.fixture
async def client(rt: Runtime, repo: Path, hostd: str) -> AsyncIterator[Client]:
    settings = rt.settings.model_copy(update={"hostd": rt.settings.hostd.model_copy(update={"url": hostd})})
    voice = VoiceService(settings, HostdClient(settings), None, rt.store)
    async with Client(create_orchestrator(AnsibleService.for_runtime(rt, repo), voice=voice)) as c:
        yield c
    await voice.hostd.aclose()


async def test_speak_then_transcribe_by_path_and_by_base64(client: Client) -> None:
    said = await client.call_tool("voice_speak", {"text": "Deploy Uptime Kuma on the east server.", "voice": VOICE})
    speech = said.structured_content
    links = [c for c in said.content if getattr(c, "type", "") == "resource_link"]
    by_path = (await client.call_tool("voice_transcribe", {"audio": speech["path"]})).structured_content
    encoded = base64.b64encode(Path(speech["path"]).read_bytes()).decode()
    by_b64 = (await client.call_tool("voice_transcribe", {"audio": encoded})).structured_content
    assert Path(speech["path"]).is_file() and speech["duration_s"] > 1.0 and speech["voice"] == VOICE
    assert links and str(links[0].uri).startswith("file://") and links[0].mime_type == "audio/wav"
    assert "kuma" in by_path["text"].lower() and by_path["text"] == by_b64["text"]
    assert by_path["language"] == "en" and by_path["rtf"] > 0 and by_path["segments"]


async def test_voices_lists_every_engine(client: Client) -> None:
    voices = (await client.call_tool("voice_voices", {})).structured_content
    assert VOICE in voices["voices"]["kokoro"] and voices["voices"]["piper"] == ["en_US-joe-medium"]


@pytest.mark.parametrize(("tool", "args", "needle"), [
    ("voice_speak", {"text": "   "}, "input: is empty"),
    ("voice_speak", {"text": "hello", "voice": "nobody"}, "voices: jf_alpha"),
    ("voice_transcribe", {"audio": "/no/such/file.wav"}, "neither an existing file nor valid base64"),
    ("voice_transcribe", {"audio": base64.b64encode(b"not audio" * 50).decode()}, "not audio in a supported format"),
    ("voice_converse", {"audio": "x", "session_id": "s1"}, "configure llm.tiers"),
])
async def test_bad_input_gets_a_clear_error(client: Client, tool: str, args: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ToolError, match=needle):
        await client.call_tool(tool, args)


async def test_unreachable_hostd_is_named(settings: Settings, tmp_path: Path) -> None:
    dead = settings.model_copy(update={"home": tmp_path, "hostd": settings.hostd.model_copy(
        update={"url": "http://127.0.0.1:9"})})
    voice = VoiceService(dead, HostdClient(dead))
    with pytest.raises(ServiceUnavailable, match=r"chiffon-hostd at http://127.0.0.1:9 is unreachable"):
        await voice.speak("hello")
    await voice.hostd.aclose()


async def test_converse_without_llm_tiers_says_how_to_configure(settings: Settings, tmp_path: Path) -> None:
    voice = VoiceService(settings, HostdClient(settings))
    with pytest.raises(ConfigError, match="llm.tiers"):
        await voice.converse("x", "s1")
    await voice.hostd.aclose()


async def test_chiffon_voice_serves_over_stdio(cli_env: dict[str, str], hostd: str) -> None:
    import sys

    from fastmcp.client.transports import StdioTransport

    bin_dir = Path(sys.executable).parent
    env = {**cli_env, "CHIFFON_HOSTD__URL": hostd}
    async with Client(StdioTransport(command=str(bin_dir / "chiffon-voice"), args=[], env=env)) as c:
        names = {t.name for t in await c.list_tools()}
        voices = (await c.call_tool("voices", {})).structured_content
    assert names == {"transcribe", "speak", "converse", "voices"} and VOICE in voices["voices"]["kokoro"]
