"""Serve the console: the runtime, the ansible service with its in-process infra worker (an approval on the
console runs without another process when ``worker_in_process``), the router and voice, then uvicorn.

The start, in order: the address is bound first (a port in use fails at once); Gradio and the pages load in a
thread while the store and the bus open; the router, voice (its engines load on the first voice turn), the
workers and the pages are built; uvicorn listens, and ``chiffon console listening on URL`` goes to stderr.
``benchmarks/console.py --only startup`` times it against a bare Gradio app (``console_start_vs_bare``).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

from chiffon.shared.config import Settings

log = logging.getLogger(__name__)


def require_operators(settings: Settings) -> None:
    """Refuse a console without an operator account (one without a login would let anyone approve); cheap, so
    ``chiffon console`` says it before loading Gradio.

    Raises:
        ConfigError: no ``console.operators``; the message names the config files read and not found, and the
            command that adds one.
    """
    if not settings.console.operators:
        from chiffon.shared.errors import ConfigError

        raise ConfigError(f"no operator accounts in console.operators ({settings.config_sources}): run `chiffon "
                          "console passwd NAME`, which adds one to your config file")


async def serve_console(settings: Settings, bind: str, port: int, repo: Path | None = None) -> None:
    """Run the console on ``bind:port`` until cancelled. HTTPS with ``http.tls_cert``/``tls_key``.

    Raises:
        ConfigError: no operator account (:func:`require_operators`).
    """
    require_operators(settings)
    sock = listen_socket(bind, port)  # a port in use fails now, not after the seconds Gradio takes to load
    try:
        await _serve(settings, sock, repo)
    finally:
        sock.close()


async def _serve(settings: Settings, sock: socket.socket, repo: Path | None) -> None:
    import uvicorn

    from chiffon.shared import audit, bus, error_bus, store  # noqa: F401  (loaded here, not beside Gradio's thread)
    from chiffon.shared.runtime import open_runtime

    if settings.database_url is None and store.running_embedded_url(settings.home / "postgres") is None:
        with warnings.catch_warnings():  # platformdirs warns on hosts without XDG_RUNTIME_DIR; harmless here
            warnings.simplefilter("ignore")
            import pgserver  # noqa: F401  (the same: the embedded PostgreSQL needs starting)
    # Gradio's import is most of the start (seconds; a bare Gradio app pays it too): it runs in a thread while the
    # store and the bus open, which is mostly waiting (a socket; an embedded PostgreSQL starting, a subprocess).
    pages = asyncio.ensure_future(asyncio.to_thread(importlib.import_module, "chiffon.orchestrator.console.app"))
    try:
        async with open_runtime(settings) as rt:
            create_app = (await pages).create_app
            from chiffon.orchestrator.compose import open_console
            from chiffon.shared.mcp import is_loopback

            async with open_console(rt, repo, sock.getsockname()[:2]) as console:
                app = create_app(console.ansible, console.voice)
                tls = settings.http.tls_cert is not None and settings.http.tls_key is not None
                config = uvicorn.Config(app, log_level="warning", lifespan="on",
                                        ssl_certfile=str(settings.http.tls_cert) if tls else None,
                                        ssl_keyfile=str(settings.http.tls_key) if tls else None)
                host = sock.getsockname()[0]
                if not is_loopback(host) and not tls:
                    log.warning("the console on %s is plain HTTP: logins cross the network in clear; set "
                                "http.tls_cert and http.tls_key", host)
                from chiffon.shared import metrics

                metrics.mark_started("console")
                await announcing_server(config, console_url(sock, tls)).serve(sockets=[sock])
    finally:
        if not pages.done():  # the runtime failed first: the import cannot be stopped, only waited for
            await asyncio.wait({pages})


def listen_socket(bind: str, port: int) -> socket.socket:
    """A TCP socket bound to ``bind:port`` (``port`` 0: a free one), as uvicorn binds its own (``SO_REUSEADDR``,
    inheritable); uvicorn listens on it once the app is built.

    Raises:
        ConfigError: the address cannot be bound (in use, not this machine's); names it and the settings.
    """
    from chiffon.shared.errors import ConfigError

    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"the console cannot listen on {bind}:{port}: {exc.strerror or exc}; choose another "
                          "address with --bind/--port (console.bind, console.port)") from exc
    sock.set_inheritable(True)
    return sock


def console_url(sock: socket.socket, tls: bool) -> str:
    """``http(s)://HOST:PORT`` of the bound ``sock`` (its real port when 0 was asked; IPv6 in brackets)."""
    host, port = sock.getsockname()[:2]
    return f"{'https' if tls else 'http'}://{f'[{host}]' if ':' in host else host}:{port}"


def announcing_server(config: Any, url: str) -> Any:
    """A ``uvicorn.Server`` for ``config`` that writes ``chiffon console listening on URL`` to stderr once it
    accepts connections (whatever the log level: the line tells a user, and a script, where to go)."""
    import uvicorn

    class Announcing(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                sys.stderr.write(f"chiffon console listening on {url}\n")
                sys.stderr.flush()

    return Announcing(config)
