"""The REST API's FastAPI app: bearer-token auth and JSON errors; :func:`chiffon.orchestrator.api.mount_api`
mounts it beside ``/mcp``.

The API is a FastAPI app mounted at ``/api/v1`` in the Starlette app FastMCP serves over streamable HTTP, so it
shares its port, TLS, Host/Origin guard (DNS rebinding) and tokens: ``http.bearer_token`` (the operator) or a
named client token (``chiffon token create``), checked by the same verifier :func:`chiffon.shared.mcp.serve`
gives ``/mcp`` (``server.auth``). Without a verifier (the server not served over HTTP by ``serve``) every
authenticated route answers 401: ``serve`` refuses to start HTTP without a token, loopback included, and so
does the API.

Errors are JSON, ``{"error": TYPE, "message": ...}`` (:class:`~chiffon.orchestrator.api.bodies.ErrorBody`):

==============================================  ======
missing, wrong or revoked token                 401 (``WWW-Authenticate: Bearer``)
approvals over the API are off                  403
unknown plan or run                             404
plan not in a state for this (decided, ran)     409
bad input; no playbook matches (``candidates``) 422
PostgreSQL, Redis or the repo unavailable       503
anything else                                   500, its details only in the server's log
==============================================  ======
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chiffon.orchestrator.api.context import Api, Refused, caller_dependency
from chiffon.orchestrator.api.plan_routes import plan_routes
from chiffon.orchestrator.api.run_routes import run_routes
from chiffon.shared.errors import (
    AnsibleError,
    ChiffonError,
    ConfigError,
    InvalidInput,
    NoMatch,
    NotFound,
    PlanStateError,
    RepoError,
    RoleNotApplied,
    ServiceUnavailable,
)

log = logging.getLogger(__name__)

def error_status(exc: ChiffonError) -> int:
    """The HTTP status of a chiffon error (the table in this module's docstring)."""
    if isinstance(exc, InvalidInput):
        return 422
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, PlanStateError):
        return 409
    if isinstance(exc, ServiceUnavailable | RepoError | ConfigError):
        return 503
    if isinstance(exc, AnsibleError):
        return 500
    return 400


def error_body(exc: ChiffonError) -> dict[str, Any]:
    """``{"error", "message"}``, plus ``field`` for bad input and ``candidates`` when nothing matched."""
    body: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, InvalidInput):
        body["field"] = exc.field
    if isinstance(exc, NoMatch) and not isinstance(exc, RoleNotApplied):
        body["candidates"] = list(exc.closest)
    if isinstance(exc, RoleNotApplied):
        body |= {"role": exc.role, "path": exc.path}
    return body


def _install_error_handlers(app: FastAPI) -> None:
    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        headers = {"WWW-Authenticate": 'Bearer realm="chiffon"'} if exc.status == 401 else None
        return JSONResponse({"error": exc.error, "message": exc.message}, status_code=exc.status, headers=headers)

    async def chiffon_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ChiffonError)
        status = error_status(exc)
        log.info("%s %s refused (%d): %s", request.method, request.url.path, status, exc)
        return JSONResponse(error_body(exc), status_code=status)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")) or "body"
        return JSONResponse({"error": "InvalidInput", "message": "; ".join(problems)[:2000], "field": field},
                            status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "HTTPError")
        return JSONResponse({"error": kind, "message": f"{request.method} {request.url.path}: {exc.detail}"},
                            status_code=exc.status_code)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": "InternalError", "message": "the server failed; its log says why"},
                            status_code=500)

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(ChiffonError, chiffon_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


def create_api(api: Api) -> FastAPI:
    """The ``/api/v1`` app over ``api``: plans, approvals, runs and their events, health; OpenAPI at
    ``/openapi.json`` inside it (``/api/v1/openapi.json`` once mounted), no HTML docs pages."""

    app = FastAPI(title="chiffon", version="1",
                  summary="Plan, approve and follow Ansible runs from automations (n8n, Home Assistant).",
                  description="Same tokens as the MCP endpoint: `Authorization: Bearer TOKEN`. "
                              "See docs/automations.md.",
                  openapi_url="/openapi.json", docs_url=None, redoc_url=None)
    _install_error_handlers(app)
    caller = caller_dependency(api)
    app.include_router(plan_routes(api, caller))
    app.include_router(run_routes(api, caller))
    return app
