"""``chiffon-hostd``: the per-host daemon that owns the speech hardware (HTTP, loopback by default)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from chiffon.shared.config import Settings, load_settings
from chiffon.shared.errors import ChiffonError, ConfigError
from chiffon.shared.logs import setup_logging
from chiffon.shared.mcp import is_loopback

log = logging.getLogger(__name__)


async def serve_hostd(settings: Settings, bind: str | None = None, port: int | None = None) -> None:
    """Serve hostd until interrupted.

    Raises:
        ConfigError: binding beyond loopback without ``hostd.token``, or with an empty one (anyone on the
            network could use it).
    """
    import uvicorn

    from chiffon.servers.hostd.app import create_app
    from chiffon.servers.hostd.heartbeat import Heartbeat
    from chiffon.servers.hostd.pool import EnginePool
    from chiffon.servers.hostd.resources import open_gpu_reader
    from chiffon.shared.bus import Bus
    from chiffon.shared.config import HostConfig
    from chiffon.shared.errors import BusUnavailable
    from chiffon.shared.hosts import withdraw_heartbeat

    bind = bind or settings.hostd.bind
    port = port or settings.hostd.port
    token = settings.hostd.token.get_secret_value().strip() if settings.hostd.token else ""
    if not is_loopback(bind) and not token:
        raise ConfigError(f"refusing to listen on {bind} without a token: set CHIFFON_HOSTD__TOKEN "
                          "(clients send it as 'Authorization: Bearer <token>'), or bind 127.0.0.1")
    reader = open_gpu_reader(settings.hosts.get(settings.host, HostConfig()).gpu, settings.hostd)
    try:
        bus: Bus | None = await Bus.open(settings.redis_url.get_secret_value() if settings.redis_url else None,
                                         settings.home)
    except BusUnavailable as exc:
        log.warning("no heartbeats: %s", exc)  # speech still works; the orchestrator will see this host offline
        bus = None
    heartbeat = Heartbeat(settings, reader, bus)
    pool = EnginePool(settings, admit=heartbeat.admit)
    config = uvicorn.Config(create_app(settings, pool, heartbeat, open_metrics=is_loopback(bind)), host=bind, port=port, log_level="warning",
                            log_config=None, lifespan="off")
    log.info("chiffon-hostd for host %s on http://%s:%d (GPU reader: %s)", settings.host, bind, port, reader.kind)
    beating = asyncio.create_task(heartbeat.run_forever(), name="chiffon-hostd-heartbeat")
    try:
        await uvicorn.Server(config).serve()
    finally:
        beating.cancel()
        await pool.close()
        if bus is not None:  # a clean stop is offline at once, not after the TTL
            await withdraw_heartbeat(bus, settings.host)
            await bus.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``chiffon-hostd`` script."""
    parser = argparse.ArgumentParser(prog="chiffon-hostd", description=__doc__)
    parser.add_argument("--host", help="This host's name (selects deploy/config/hosts/<name>.yaml).")
    parser.add_argument("--bind", help="Listen address (default hostd.bind, 127.0.0.1).")
    parser.add_argument("--port", type=int, help="Listen port (default hostd.port, 8770).")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose, part="hostd")
    try:
        settings = load_settings(None, host=args.host)
        asyncio.run(serve_hostd(settings, args.bind, args.port))
    except ChiffonError as exc:
        sys.stderr.write(f"error: {exc}\n")
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
