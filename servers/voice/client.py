"""chiffon-voice's way to the speech engines: chiffon-hostd over HTTP, or the same app in-process.

With ``hostd.url`` set the client talks to that daemon (bearer token from
``hostd.token``); unset, it mounts hostd's ASGI app in this process, so the
embedded setup needs no daemon and both paths run the same code.
"""

from __future__ import annotations

from typing import Any

import httpx

from chiffon.shared.config import Settings
from chiffon.shared.errors import ChiffonError, ConfigError, InvalidInput, ServiceUnavailable

IN_PROCESS = "http://in-process-hostd"


class HostdClient:
    """Async client of hostd's audio endpoints; errors come back as chiffon errors naming the URL."""

    def __init__(self, settings: Settings) -> None:
        hostd = settings.hostd
        headers = {"Authorization": f"Bearer {hostd.token.get_secret_value()}"} if hostd.token else {}
        timeout = httpx.Timeout(300, connect=5)
        if hostd.url:
            self.url = hostd.url.rstrip("/")
            self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)
        else:
            from chiffon.servers.hostd.app import create_app

            self.url = IN_PROCESS
            self._http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url=IN_PROCESS,
                                           headers=headers, timeout=timeout)

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"chiffon-hostd at {self.url} is unreachable: {type(exc).__name__}: {exc}. "
                                     "Start it with `chiffon hostd` on the voice host, or unset hostd.url "
                                     "to run the engines in this process.") from exc
        if response.status_code < 400:
            return response
        try:
            err = response.json()["error"]
            message, param = err["message"], err.get("param")
        except (ValueError, KeyError, TypeError):
            message, param = response.text[:300], None
        if response.status_code == 400:
            field = param or "request"
            raise InvalidInput(field, message.removeprefix(f"{field}: "))
        if response.status_code == 401:
            raise ConfigError(f"chiffon-hostd at {self.url} refused the token: set hostd.token to its token")
        if response.status_code == 503:
            raise ConfigError(f"chiffon-hostd at {self.url}: {message}")
        raise ChiffonError(f"chiffon-hostd at {self.url} answered {response.status_code}: {message}")

    async def transcribe(self, audio: bytes, *, filename: str = "audio", language: str | None = None,
                         prompt: str | None = None, model: str | None = None) -> dict[str, Any]:
        """hostd's verbose_json transcription: text, language, duration, segments, rtf, processing_s, model."""
        data = {"response_format": "verbose_json", **{k: v for k, v in
                                                      (("language", language), ("prompt", prompt), ("model", model)) if v}}
        response = await self._call("POST", "/v1/audio/transcriptions", files={"file": (filename, audio)}, data=data)
        return response.json()  # type: ignore[no-any-return]

    async def speak(self, text: str, *, voice: str | None = None, speed: float = 1.0,
                    model: str | None = None) -> tuple[bytes, int, str]:
        """``text`` spoken: ``(16-bit mono PCM bytes, sample rate in Hz, voice used)``."""
        body = {"input": text, "speed": speed, "response_format": "pcm",
                **{k: v for k, v in (("voice", voice), ("model", model)) if v}}
        response = await self._call("POST", "/v1/audio/speech", json=body)
        return response.content, int(response.headers["x-sample-rate"]), response.headers["x-voice"]

    async def voices(self) -> dict[str, Any]:
        """``{"voices": {engine: [voice, ...]}, "default_engine": ...}``."""
        return (await self._call("GET", "/v1/audio/voices")).json()  # type: ignore[no-any-return]

    async def health(self) -> dict[str, Any]:
        """hostd's health report."""
        return (await self._call("GET", "/health")).json()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()
