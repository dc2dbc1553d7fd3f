"""chiffon-hostd's HTTP API: the health protocol and OpenAI-compatible audio endpoints.

    GET  /health                    {"status", "issues", "service", "timestamp", "models": {...}}
    GET  /v1/models                 OpenAI list of the Whisper models and TTS engines served here
    GET  /v1/audio/voices           {"voices": {"kokoro": [...], "piper": [...]}}
    POST /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format json|text|verbose_json
    POST /v1/audio/speech           JSON: model, input, voice, response_format wav|pcm, speed; streamed per sentence
    GET  /capacity                  this host's last snapshot; ?model=NAME or ?need_mb=N adds whether it fits now
    GET  /metrics                   Prometheus text format: host, GPU and VRAM gauges, request latencies

Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, so
the OpenAI SDK raises them as ``BadRequestError`` and the like. When a token is
configured every route but ``/health`` (and ``/metrics`` on a loopback bind) needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from chiffon.servers.hostd import models
from chiffon.servers.hostd.audio import SUPPORTED_OUTPUT, decode, to_pcm16, wav_header
from chiffon.servers.hostd.heartbeat import Heartbeat
from chiffon.servers.hostd.pool import STT_ALIASES, TTS_ALIASES, TTS_ENGINES, EnginePool
from chiffon.shared import metrics
from chiffon.shared.config import Settings
from chiffon.shared.errors import ChiffonError, ConfigError, InvalidInput

log = logging.getLogger(__name__)
SERVICE = "chiffon-hostd"
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json")
ROUTES = ("/health", "/v1/models", "/v1/audio/voices", "/v1/audio/transcriptions", "/v1/audio/speech", "/capacity",
          "/metrics")


def error(status: int, message: str, param: str | None = None, kind: str = "invalid_request_error") -> JSONResponse:
    """An OpenAI-shaped error response."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status)


def _as_response(exc: ChiffonError) -> JSONResponse:
    if isinstance(exc, InvalidInput):
        return error(400, str(exc), exc.field)
    if isinstance(exc, ConfigError):
        return error(503, str(exc), "model", "model_unavailable")
    return error(500, str(exc), None, "server_error")


def create_app(settings: Settings, pool: EnginePool | None = None, heartbeat: Heartbeat | None = None, *,
               open_metrics: bool = True) -> Starlette:
    """The hostd ASGI app over ``pool`` (a new :class:`EnginePool` for ``settings`` when None) and ``heartbeat``
    (``/capacity`` answers 503 without one)."""
    pool = pool or EnginePool(settings)
    voice = settings.voice
    hostd = settings.hostd
    token = hostd.token.get_secret_value() if hostd.token else None

    async def health(request: Request) -> JSONResponse:
        inventory = models.inventory(settings)
        missing = [f"{m['engine']} {m['name']} is not present (chiffon models pull)" for m in inventory if not m["present"]]
        default_tts = voice.tts_engine
        essential = [m for m in inventory if (m["engine"] == "whisper" and m["name"] == voice.stt_models[0])
                     or m["engine"] == default_tts]
        essential_keys = {f"stt:{voice.stt_models[0]}", f"tts:{default_tts}"}
        broken = [f"{key} failed to load: {why}" for key, why in sorted(pool.failures.items())]
        beat = [f"heartbeat not published: {heartbeat.failure}"] if heartbeat is not None and heartbeat.failure else []
        status = ("failed" if not all(m["present"] for m in essential) or essential_keys & set(pool.failures)
                  else "degraded" if missing or broken or beat else "ok")
        return JSONResponse({"status": status, "issues": missing + broken + beat, "service": SERVICE,
                             "timestamp": datetime.now(UTC).isoformat(), "host": settings.host,
                             "models": {"loaded": pool.loaded(), "inventory": inventory}})

    async def list_models(request: Request) -> JSONResponse:
        data = [{"id": m["name"], "object": "model", "created": 0, "owned_by": "chiffon", "engine": m["engine"],
                 "task": "transcription" if m["engine"] == "whisper" else "speech", "present": m["present"]}
                for m in models.inventory(settings)]
        data += [{"id": alias, "object": "model", "created": 0, "owned_by": "chiffon", "alias_of": "default"}
                 for alias in (*STT_ALIASES, *TTS_ALIASES)]
        return JSONResponse({"object": "list", "data": data})

    async def voices(request: Request) -> JSONResponse:
        out = {name: models.voice_names(settings, name) for name in TTS_ENGINES}  # no model is loaded to list them
        return JSONResponse({"voices": out, "default_engine": voice.tts_engine})

    async def transcriptions(request: Request) -> Response:
        try:
            async with request.form(max_files=1, max_fields=20, max_part_size=voice.max_upload_bytes) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise InvalidInput("file", "send the audio as a multipart file field named 'file'")
                data = await upload.read(voice.max_upload_bytes + 1)
                fields = {k: str(v) for k, v in form.items() if k != "file"}
        except InvalidInput as exc:
            return _as_response(exc)
        except Exception as exc:  # multipart parser errors: too large, malformed
            return error(400, f"could not read the upload: {exc}", "file")
        try:
            if len(data) > voice.max_upload_bytes:
                raise InvalidInput("file", f"larger than {voice.max_upload_bytes} bytes (voice.max_upload_bytes)")
            fmt = fields.get("response_format") or "json"
            if fmt not in TRANSCRIPTION_FORMATS:
                raise InvalidInput("response_format", f"{fmt!r} is not one of {', '.join(TRANSCRIPTION_FORMATS)}")
            model = pool.stt_name(fields.get("model"))  # cheap checks before decoding
            samples = decode(data, max_seconds=voice.max_audio_s)
            prompt = fields.get("prompt") or voice.vocabulary_prompt or None
            result = await pool.transcribe(model, samples, fields.get("language") or None, prompt)
        except ChiffonError as exc:
            return _as_response(exc)
        if fmt == "text":
            return PlainTextResponse(result.text)
        if fmt == "json":
            return JSONResponse({"text": result.text})
        return JSONResponse({"task": "transcribe", "language": result.language, "duration": result.duration_s,
                             "text": result.text, "segments": [s.model_dump() for s in result.segments],
                             "model": result.model, "processing_s": result.processing_s, "rtf": result.rtf})

    async def speech(request: Request) -> Response:
        try:
            body: dict[str, Any] = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "the body must be a JSON object", None)
        try:
            if not isinstance(body, dict):
                raise InvalidInput("body", "must be a JSON object")
            text = body.get("input")
            if not isinstance(text, str) or not text.strip():
                raise InvalidInput("input", "is empty")
            if len(text) > voice.max_tts_chars:
                raise InvalidInput("input", f"{len(text)} characters; at most {voice.max_tts_chars} (voice.max_tts_chars)")
            fmt = body.get("response_format") or "wav"
            if fmt not in SUPPORTED_OUTPUT:
                raise InvalidInput("response_format", f"{fmt!r} is not supported; use one of {', '.join(SUPPORTED_OUTPUT)}")
            speed = body.get("speed", 1.0)
            if not isinstance(speed, (int, float)) or isinstance(speed, bool):
                raise InvalidInput("speed", "must be a number")
            rate, chosen, pieces = await pool.speak(body.get("model"), text, body.get("voice"), float(speed))
        except ChiffonError as exc:
            return _as_response(exc)

        async def stream() -> AsyncIterator[bytes]:
            if fmt == "wav":
                yield wav_header(rate)
            async for piece in pieces:
                yield to_pcm16(piece)

        media = "audio/wav" if fmt == "wav" else "audio/pcm"
        return StreamingResponse(stream(), media_type=media,
                                 headers={"X-Sample-Rate": str(rate), "X-Voice": chosen, "Cache-Control": "no-store"})

    async def capacity(request: Request) -> JSONResponse:
        if heartbeat is None:
            return error(503, "resource reporting is off in this process", None, "unavailable")
        model, need = request.query_params.get("model"), request.query_params.get("need_mb")
        try:
            fit = None
            if model or need:
                if need is not None and not need.strip().isdigit():
                    raise InvalidInput("need_mb", f"must be a positive whole number of MB, got {need!r}")
                fit = await heartbeat.fit(model, int(need) if need is not None else None)
            snapshot = heartbeat.latest or await heartbeat.beat()
        except ChiffonError as exc:
            return _as_response(exc)
        body: dict[str, Any] = {"host": settings.host, "snapshot": json.loads(snapshot.model_dump_json())}
        if fit is not None:
            body.update(fit.model_dump())
        return JSONResponse(body)

    async def metrics_route(request: Request) -> Response:
        if heartbeat is not None and heartbeat.latest is None:
            await heartbeat.beat()
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return Starlette(
        routes=[Route("/health", health), Route("/v1/models", list_models), Route("/v1/audio/voices", voices),
                Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
                Route("/v1/audio/speech", speech, methods=["POST"]),
                Route("/capacity", capacity), Route("/metrics", metrics_route)],
        middleware=[Middleware(Measured), *([Middleware(BearerAuth, token=token, open_metrics=open_metrics)]
                                            if token else [])],
    )


class Measured:
    """ASGI middleware: count and time every request (``chiffon_http_*`` metrics, labelled by route path)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, code = time.perf_counter(), 500

        async def sending(message: Any) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope["path"] if scope["path"] in ROUTES else "other"  # bounded label values
            metrics.HTTP_REQUESTS.labels(SERVICE, route, str(code)).inc()
            metrics.HTTP_SECONDS.labels(SERVICE, route).observe(time.perf_counter() - started)


class BearerAuth:
    """ASGI middleware: every HTTP route but ``/health`` (and ``/metrics`` when ``open_metrics``, i.e. on a
    loopback bind) needs ``Authorization: Bearer <token>``, compared in constant time."""

    def __init__(self, app: Any, token: str, open_metrics: bool = True) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.open = ("/health", "/metrics") if open_metrics else ("/health",)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] not in self.open:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await error(401, "missing or wrong bearer token", None, "authentication_error")(scope, receive, send)
                return
        await self.app(scope, receive, send)
