"""MCP plumbing every chiffon server uses: error translation and transports.

* :class:`ChiffonErrors` turns a :class:`~shared.errors.ChiffonError` raised by a
  tool into a ``ToolError`` whose message reaches the model; servers are built
  with ``mask_error_details=True``, so anything else becomes a generic error.
* :func:`serve` runs a server over stdio or streamable HTTP. HTTP always needs a token, loopback included
  (any local account, or a reverse proxy on the box, reaches 127.0.0.1): ``http.bearer_token`` (the operator)
  or a named client token (``chiffon token create``); with neither configured it refuses to start. It adds
  ``GET /health`` (the health protocol; unauthenticated, it says only whether parts answer) and ``GET /metrics``
  (Prometheus; tool calls and latencies by :class:`Measured`), which needs the same token as ``/mcp``: tool
  counts, approvals by channel and queue depth tell another account when plans are made and approved.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Literal

from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.server.middleware import Middleware, MiddlewareContext

from chiffon.shared import metrics
from chiffon.shared.config import Settings
from chiffon.shared.errors import ChiffonError, ConfigError
from chiffon.shared.logs import log_context

log = logging.getLogger(__name__)

Transport = Literal["stdio", "http"]


class ChiffonErrors(Middleware):
    """Translate deliberate chiffon errors into tool errors the model can act on."""

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        try:
            return await call_next(context)
        except Exception as exc:
            # FastMCP masks a tool's exception inside a ToolError; find ours in the chain.
            cause: BaseException | None = exc
            while cause is not None and not isinstance(cause, ChiffonError):
                cause = cause.__cause__ or cause.__context__
            if cause is None:
                raise
            log.info("tool %s refused: %s", getattr(context.message, "name", "?"), cause)
            raise ToolError(str(cause)) from cause


class Measured(Middleware):
    """Count and time every tool call (``chiffon_mcp_tool_*`` metrics), labelled by server and tool, and give
    each a correlation id (``request``) for its log records and errors."""

    def __init__(self, server: str) -> None:
        self.server = server

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: Any) -> Any:
        tool = str(getattr(context.message, "name", "?"))
        started, outcome = time.perf_counter(), "error"
        try:
            with log_context(request=f"req-{uuid.uuid4().hex[:12]}"):  # one id per tool call, on every record
                result = await call_next(context)
            outcome = "ok"
            return result
        finally:
            metrics.TOOL_CALLS.labels(self.server, tool, outcome).inc()
            metrics.TOOL_SECONDS.labels(self.server, tool).observe(time.perf_counter() - started)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


NEW_TOKEN = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
"""A command that prints a fresh 256-bit token (what the no-token error tells the operator to run)."""


async def serve(server: FastMCP, settings: Settings, transport: Transport, host: str | None, port: int | None,
                refresh: Callable[[], Awaitable[None]] | None = None,
                token_lookup: Callable[[str], Awaitable[str | None]] | None = None,
                health_check: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                tokens_exist: Callable[[], Awaitable[bool]] | None = None) -> None:
    """Run ``server`` until cancelled. Over HTTP, ``refresh()`` runs before each ``/metrics`` scrape (to read
    gauges that live elsewhere, e.g. queue depth in Redis).

    Every HTTP request to ``/mcp`` and ``/metrics`` needs ``Authorization: Bearer TOKEN``, on loopback too:
    ``http.bearer_token`` (the operator) or, with ``token_lookup``, a live named client token
    (:mod:`shared.tokens`) resolved to its name. Anything else answers 401. ``tokens_exist()`` says whether any
    live named token exists (checked once, at start).

    Raises:
        ConfigError: HTTP with neither a non-empty ``http.bearer_token`` nor a live named token (the message
            says what to run), or an empty bearer token.
    """
    metrics.mark_started(server.name)
    if transport == "stdio":
        await server.run_async("stdio", show_banner=False)
        return
    host = host or settings.http.host
    port = port or settings.http.port
    token = settings.http.bearer_token
    secret = token.get_secret_value().strip() if token is not None else ""
    if token is not None and not secret:
        raise ConfigError("http.bearer_token is empty; set a real token (CHIFFON_HTTP__BEARER_TOKEN) or unset it")
    named = token_lookup is not None and tokens_exist is not None and await tokens_exist()
    if not secret and not named:
        raise ConfigError(no_token_message(server.name, host, port, named_tokens=token_lookup is not None))
    verifier = bearer_verifier(secret, token_lookup)
    server.auth = verifier
    add_http_routes(server, refresh, metrics_verifier=verifier, health_check=health_check)
    hosts, origins = allowed_hosts_and_origins(host, port, settings.http.allowed_hosts)
    tls = settings.http.tls_cert is not None and settings.http.tls_key is not None
    uvicorn_config = {"ssl_certfile": str(settings.http.tls_cert.expanduser()),  # type: ignore[union-attr]
                      "ssl_keyfile": str(settings.http.tls_key.expanduser())} if tls else None  # type: ignore[union-attr]
    log.info("serving %s over streamable HTTP on %s://%s:%s/mcp (Host allowed: %s)", server.name,
             "https" if tls else "http", host, port, ", ".join(hosts))
    await server.run_async("http", show_banner=False, host=host, port=port, host_origin_protection=True,
                           allowed_hosts=hosts, allowed_origins=origins, uvicorn_config=uvicorn_config)


def no_token_message(name: str, host: str, port: int, *, named_tokens: bool) -> str:
    """Why ``serve`` refuses HTTP without a token, and exactly what to run instead."""
    how = (f"set CHIFFON_HTTP__BEARER_TOKEN to a secret only the operator and the service read (e.g. "
           f"`export CHIFFON_HTTP__BEARER_TOKEN=$({NEW_TOKEN})`, or http.bearer_token in a 0600 config)")
    if named_tokens:
        how = (f"run `chiffon token create NAME` (e.g. `chiffon token create desktop-claude`) and give the token "
               f"it prints to your MCP client (`chiffon install CLIENT --url http://{host}:{port}/mcp --token -`), "
               f"or {how}")
    return (f"refusing to serve {name} over HTTP on {host} without a token: on loopback too, any other local "
            f"account (or a reverse proxy on this machine) could call its tools, and chiffon's could plan and "
            f"approve. Either {how}; or use the stdio transport (the default)")


def allowed_hosts_and_origins(host: str, port: int, extra: list[str]) -> tuple[list[str], list[str]]:
    """``Host`` header values and browser ``Origin`` values the HTTP transport accepts.

    Against DNS rebinding (a web page whose name resolves to 127.0.0.1 driving the tools,
    https://modelcontextprotocol.io/specification/2025-06-18/basic/transports#security-warning): the bind
    address, the loopback names and ``http.allowed_hosts``, each with and without the port; an Origin
    must be ``http(s)://`` one of those. FastMCP's guard answers 421 to another Host and 403 to another
    Origin before any MCP session exists.
    """
    names = ["127.0.0.1", "localhost", "::1", *extra]
    if host not in ("0.0.0.0", "::", ""):
        names.insert(0, host)
    names = list(dict.fromkeys(names))
    bracket = [f"[{n}]" if ":" in n else n for n in names]
    hosts = [*names, *(f"{b}:{port}" for b in bracket)]
    origins = [f"{scheme}://{b}{suffix}" for b in bracket for scheme in ("http", "https")
               for suffix in ("", f":{port}")]
    return hosts, origins


def bearer_verifier(secret: str, token_lookup: Callable[[str], Awaitable[str | None]] | None = None) -> Any:
    """A FastMCP token verifier: ``secret`` (compared in constant time, ``hmac.compare_digest``, so response timing
    says nothing about how much of a guess was right) is the operator; a named client token that
    ``token_lookup`` resolves is ``token:<name>``."""
    import hmac

    from fastmcp.server.auth import AccessToken, TokenVerifier

    class _Verifier(TokenVerifier):
        async def verify_token(self, token: str) -> AccessToken | None:
            if secret and hmac.compare_digest(token.encode(), secret.encode()):
                return AccessToken(token=token, client_id="chiffon-operator", scopes=[])
            name = await token_lookup(token) if token_lookup is not None and token else None
            return AccessToken(token=token, client_id=f"token:{name}", scopes=[]) if name else None

    return _Verifier()


def add_http_routes(server: FastMCP, refresh: Callable[[], Awaitable[None]] | None = None, *,
                    metrics_token: str | None = None, metrics_verifier: Any = None,
                    health_check: Callable[[], Awaitable[dict[str, Any]]] | None = None) -> None:
    """``GET /health`` and ``GET /metrics`` beside ``/mcp``, and tool-call metrics on ``server``.

    ``metrics_token`` / ``metrics_verifier`` (a FastMCP ``TokenVerifier``, what :func:`serve` passes): when
    set, ``/metrics`` answers 401 without ``Authorization: Bearer <token>`` that one of them accepts.
    ``health_check``: the parts behind the server
    (:func:`chiffon.shared.health.check_parts`); ``/health`` answers 503 when it says ``failed``. Without it,
    ``/health`` only says the process answers.
    """
    import hmac

    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    from chiffon.shared.health import Health

    server.add_middleware(Measured(server.name))

    @server.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        if health_check is None:
            return JSONResponse(Health(service=server.name, status="ok").model_dump())
        report = await health_check()
        return JSONResponse(report, status_code=503 if report["status"] == "failed" else 200)

    async def allowed(request: Request) -> bool:
        if metrics_token is None and metrics_verifier is None:
            return True
        header = request.headers.get("authorization", "")
        if metrics_token is not None and hmac.compare_digest(header.encode(), f"Bearer {metrics_token}".encode()):
            return True
        scheme, _, given = header.partition(" ")
        return (metrics_verifier is not None and scheme.lower() == "bearer" and bool(given.strip())
                and await metrics_verifier.verify_token(given.strip()) is not None)

    @server.custom_route("/metrics", methods=["GET"])
    async def metrics_route(request: Request) -> Response:
        if not await allowed(request):
            return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        if refresh is not None:
            await refresh()
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)


def server_main(
    prog: str,
    description: str | None,
    serve_fn: Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, None]],
    argv: list[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """The shared ``main()`` of every ``chiffon-*`` server: flags, stderr logging, settings, clean errors.

    ``serve_fn(settings, args)`` runs the server; ``args`` has transport, host, port, config, verbose and
    whatever ``add_arguments`` added. A ChiffonError exits 2 with its message on stderr.
    """
    from chiffon.shared.config import load_settings
    from chiffon.shared.logs import setup_logging

    parser = argparse.ArgumentParser(prog=prog, description=description)
    if add_arguments is not None:
        add_arguments(parser)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8765)")
    parser.add_argument("--config", type=Path, help="a chiffon.yaml merged over the shipped, user and system files "
                                                          "(instead of CHIFFON_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose, part=prog.removeprefix("chiffon-"))
    try:
        asyncio.run(serve_fn(load_settings(args.config), args))
    except ChiffonError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        raise SystemExit(2) from exc
    except KeyboardInterrupt:
        pass
