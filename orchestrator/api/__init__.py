"""The REST API for automations (n8n, Home Assistant): ``/api/v1`` on the orchestrator's HTTP server, with the same
tokens as its MCP endpoint. Make a plan from a request, list and read plans, approve or reject one, read a run and
follow its events (SSE), health; OpenAPI at ``/api/v1/openapi.json``. See docs/automations.md.

* :func:`mount_api` (here): the mount beside ``/mcp``, built on its first request;
* :mod:`.app`: the FastAPI app, token check, JSON errors;
* :mod:`.bodies`: what clients send, validated;
* :mod:`.plan_routes`: ``/plans`` and the approval policy;
* :mod:`.run_routes`: ``/runs``, the event stream, ``/health``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastmcp import FastMCP

    from chiffon.orchestrator.playbook_memory import PlaybookIndex
    from chiffon.servers.ansible.service import AnsibleService
    from chiffon.servers.llm.router import Router

PREFIX = "/api/v1"
"""Where the API is mounted; its OpenAPI document is ``/api/v1/openapi.json``."""


class _BuiltOnFirstRequest:
    """An ASGI app made by ``build()`` when the first request reaches it: FastAPI and the routes load only where
    the API is used (never for a stdio server, whose HTTP routes nobody calls)."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = self._build()
        await self._app(scope, receive, send)


def mount_api(server: FastMCP, svc: AnsibleService, *, router: Router | None = None,
              playbooks: PlaybookIndex | None = None,
              record: Callable[[str, str, str], Awaitable[None]] | None = None) -> None:
    """Mount the REST API at :data:`PREFIX` in the HTTP app ``server`` serves (nothing over stdio). Its routes check
    tokens with ``server.auth``, the verifier :func:`chiffon.shared.mcp.serve` sets for ``/mcp``; ``router``,
    ``playbooks`` and ``record`` are what the plan_request tool plans and remembers with."""
    from starlette.routing import Mount

    def build() -> Any:
        from chiffon.orchestrator.api.app import create_api
        from chiffon.orchestrator.api.context import Api

        return create_api(Api(svc, verifier=lambda: server.auth, router=router, playbooks=playbooks, record=record))

    # FastMCP's custom_route takes plain routes only; its own contrib adds to this list the same way
    server._additional_http_routes.append(Mount(PREFIX, app=_BuiltOnFirstRequest(build)))
