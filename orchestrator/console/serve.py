"""Serve the console: the runtime, the ansible service with its in-process infra worker (an approval on the
console runs without another process when ``worker_in_process``), the router and voice, then uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

from chiffon.shared.config import Settings
from chiffon.shared.mcp import is_loopback

log = logging.getLogger(__name__)


async def serve_console(settings: Settings, bind: str, port: int, repo: Path | None = None) -> None:
    """Run the console on ``bind:port`` until cancelled. HTTPS with ``http.tls_cert``/``tls_key``.

    Raises:
        ConfigError: no operator account (a console without a login would let anyone approve).
    """
    import uvicorn

    from chiffon.orchestrator.console.app import create_app
    from chiffon.orchestrator.incidents import running_correlator
    from chiffon.orchestrator.runs import running_infra_worker
    from chiffon.servers.ansible.service import AnsibleService
    from chiffon.servers.llm.router import open_router
    from chiffon.servers.voice.service import open_voice
    from chiffon.shared.errors import ConfigError
    from chiffon.shared.runtime import open_runtime

    if not settings.console.operators:
        raise ConfigError("no operator accounts: add one to console.operators in chiffon.yaml (`chiffon console passwd "
                          "NAME` prints the entry)")
    async with open_runtime(settings) as rt:
        svc = AnsibleService.for_runtime(rt, repo)
        async with running_infra_worker(svc, settings.worker_in_process), open_router(rt) as router, \
                open_voice(rt, router) as voice, running_correlator(rt):
            app = create_app(svc, voice if router.settings.tiers else None)
            tls = settings.http.tls_cert is not None and settings.http.tls_key is not None
            config = uvicorn.Config(app, host=bind, port=port, log_level="warning", lifespan="on",
                                    ssl_certfile=str(settings.http.tls_cert) if tls else None,
                                    ssl_keyfile=str(settings.http.tls_key) if tls else None)
            if not is_loopback(bind) and not tls:
                log.warning("the console on %s is plain HTTP: logins cross the network in clear; set http.tls_cert "
                            "and http.tls_key", bind)
            from chiffon.shared import metrics

            metrics.mark_started("console")
            log.info("console on %s://%s:%s", "https" if tls else "http", bind, port)
            await uvicorn.Server(config).serve()
