"""``chiffon-hostd``: the per-host daemon that owns the speech hardware (HTTP, loopback by default)."""

from __future__ import annotations

import argparse
import logging
import sys

from shared.config import Settings, load_settings
from shared.errors import ConfigError
from shared.logs import setup_logging
from shared.mcp import is_loopback

log = logging.getLogger(__name__)


async def serve_hostd(settings: Settings, bind: str | None = None, port: int | None = None) -> None:
    """Serve hostd until interrupted.

    Raises:
        ConfigError: binding beyond loopback without ``voice.hostd_token`` (anyone on the network could use it).
    """
    import uvicorn

    from servers.hostd.app import create_app
    from servers.hostd.pool import EnginePool

    bind = bind or settings.voice.bind
    port = port or settings.voice.port
    if not is_loopback(bind) and settings.voice.hostd_token is None:
        raise ConfigError(f"refusing to listen on {bind} without a token: set CHIFFON_VOICE__HOSTD_TOKEN "
                          "(clients send it as 'Authorization: Bearer <token>'), or bind 127.0.0.1")
    pool = EnginePool(settings)
    config = uvicorn.Config(create_app(settings, pool), host=bind, port=port, log_level="warning",
                            log_config=None, lifespan="off")
    log.info("chiffon-hostd for host %s on http://%s:%d", settings.host, bind, port)
    try:
        await uvicorn.Server(config).serve()
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``chiffon-hostd`` script."""
    import asyncio

    parser = argparse.ArgumentParser(prog="chiffon-hostd", description=__doc__)
    parser.add_argument("--host", help="This host's name (selects deploy/config/hosts/<name>.yaml).")
    parser.add_argument("--bind", help="Listen address (default voice.bind, 127.0.0.1).")
    parser.add_argument("--port", type=int, help="Listen port (default voice.port, 8770).")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    settings = load_settings(None, host=args.host)
    try:
        asyncio.run(serve_hostd(settings, args.bind, args.port))
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
