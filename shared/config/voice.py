"""Speech (``voice:``): the models and voices chiffon-hostd serves."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from chiffon.shared.config.base import Section, moved_keys


class VoiceSettings(Section):
    """Speech: the models and voices chiffon-hostd serves on this host (where hostd listens: ``hostd:``)."""

    @model_validator(mode="before")
    @classmethod
    def _hostd_keys_moved(cls, data: Any) -> Any:
        return moved_keys(data, {"hostd_url": "hostd.url", "hostd_token": "hostd.token", "bind": "hostd.bind",
                             "port": "hostd.port"}, "voice")

    stt_models: list[str] = Field(["tiny.en"], min_length=1, description="Whisper models served; the first is the default.")
    tts_engine: Literal["kokoro", "piper"] = Field("kokoro", description="Default TTS engine.")
    piper_voices: list[str] = Field(["en_US-joe-medium"], description="Piper voices served.")
    default_voice: str | None = Field(None, description="Voice when a request names none; unset: the engine's first "
                                                        "preferred voice that is present.")
    compute_type: str = Field("int8", description="CTranslate2 compute type for Whisper (int8 on CPU).")
    vocabulary_prompt: str = Field(
        "Homelab commands: deploy, restart, back up, Redis, Postgres, Uptime Kuma, Ansible, Jellyfin, Grafana, "
        "Pi-hole, the east server, the desktop, the ai host.",
        description="Whisper initial prompt biasing it toward homelab names; empty disables it.")
    idle_unload_s: float = Field(600, gt=0, description="A model unused this long is unloaded.")
    max_audio_s: float = Field(300, gt=0, description="Longest audio transcribed, seconds.")
    max_upload_bytes: int = Field(25 * 1024 * 1024, gt=0, description="Largest upload (OpenAI's limit: 25 MB).")
    max_tts_chars: int = Field(4096, gt=0, description="Longest text spoken (OpenAI's limit: 4096 characters).")
