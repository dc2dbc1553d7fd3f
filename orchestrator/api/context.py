"""What the REST API's routes work with: the services (:class:`Api`), who called (:class:`Caller`, admitted by
:func:`caller_dependency` on a live bearer token) and an HTTP-level refusal (:class:`Refused`).

Kept apart from :mod:`.app` (which builds the FastAPI app from the routes) so the route modules and the app
import it, never one another.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

if TYPE_CHECKING:
    from chiffon.orchestrator.playbook_memory import PlaybookIndex
    from chiffon.servers.ansible.service import AnsibleService
    from chiffon.servers.llm.router import Router


class Refused(Exception):
    """An HTTP-level refusal the API answers as ``{"error", "message"}`` with ``status`` (401 no token, 403 the
    approval policy)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        self.status, self.error, self.message = status, error, message
        super().__init__(message)


@dataclass(frozen=True)
class Caller:
    """Who called: the token's client id (``chiffon-operator`` or ``token:NAME``) and the peer address."""

    client_id: str
    address: str

    @property
    def approver(self) -> str:
        """What a decision through the API records as its approver: ``token:NAME from ADDRESS``, the token's word
        (proof of a human only with a one-time code, which ``decide`` marks `` + totp``)."""
        return f"{self.client_id} from {self.address}"


@dataclass
class Api:
    """What the routes need: the ansible service (runtime, bound repo), the planner's router and playbook memory
    (as the plan_request tool has them), ``record`` (memory of requests, best effort) and ``verifier`` (the
    server's token verifier, read per request since ``serve`` sets it after the app is built)."""

    svc: AnsibleService
    verifier: Callable[[], Any]
    router: Router | None = None
    playbooks: PlaybookIndex | None = None
    record: Callable[[str, str, str], Awaitable[None]] | None = None


_bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                     description="`http.bearer_token` or a named token from `chiffon token create NAME`.")


def caller_dependency(api: Api) -> Callable[..., Awaitable[Caller]]:
    """A FastAPI dependency that admits a request with a live token and says who it is.

    Raises:
        Refused: 401 without ``Authorization: Bearer TOKEN``, with a token the verifier does not know (wrong or
            revoked), or when the server has no verifier at all.
    """

    async def caller(request: Request,
                     credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
        verifier = api.verifier()
        given = credentials.credentials.strip() if credentials is not None else ""
        if not given:
            raise Refused(401, "Unauthorized", "send `Authorization: Bearer TOKEN` (http.bearer_token, or a token "
                                               "from `chiffon token create NAME`)")
        access = await verifier.verify_token(given) if verifier is not None else None
        if access is None:
            raise Refused(401, "Unauthorized", "the bearer token is wrong or revoked (`chiffon token list` shows "
                                               "the live ones)")
        return Caller(access.client_id, request.client.host if request.client else "unknown address")

    return caller
