"""Named bearer tokens for MCP clients on other machines: who called is known, and can be cut off alone.

``chiffon token create NAME`` makes a 256-bit random token (``secrets.token_urlsafe(32)``), shows it
once and stores only its SHA-256 in PostgreSQL (``client_tokens``). A request's token is hashed and
looked up; the stored digest is compared with ``hmac.compare_digest``. ``revoke`` ends a token at
once. The token's name is what the audit records as the approving client. Every HTTP server needs a token,
loopback included (:func:`shared.mcp.serve`): a live named token, or ``http.bearer_token``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any

from chiffon.shared.errors import InvalidInput, NotFound
from chiffon.shared.store import Store

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def digest(token: str) -> str:
    """SHA-256 hex digest of ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create(store: Store, name: str) -> str:
    """A new token named ``name``; the only time its value exists outside the client.

    Raises:
        InvalidInput: a bad name (lower-case letters, digits, . _ -), or a name already in use.
    """
    if not _NAME.match(name or ""):
        raise InvalidInput("name", "use lower-case letters, digits, '.', '_' and '-' (e.g. desktop-trae)")
    token = secrets.token_urlsafe(32)
    added = await store.pool.fetchval(
        "INSERT INTO client_tokens (name, token_sha256) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING name",
        name, digest(token))
    if added is None:
        raise InvalidInput("name", f"a token named {name!r} exists; revoke it first or pick another name")
    return token


async def verify(store: Store, token: str) -> str | None:
    """The name of the live token ``token`` is, or None."""
    wanted = digest(token)
    row = await store.pool.fetchrow(
        "UPDATE client_tokens SET last_used_at = now() WHERE token_sha256 = $1 AND revoked_at IS NULL "
        "RETURNING name, token_sha256", wanted)
    if row is None or not hmac.compare_digest(row["token_sha256"], wanted):
        return None
    return str(row["name"])


async def any_live(store: Store) -> bool:
    """True when at least one token is live (not revoked): then ``serve`` may start HTTP without
    ``http.bearer_token``, since every client must still send one of them."""
    return bool(await store.pool.fetchval("SELECT EXISTS (SELECT 1 FROM client_tokens WHERE revoked_at IS NULL)"))


def lookups(store: Store) -> dict[str, Any]:
    """``serve``'s keyword arguments for named tokens in ``store``: ``token_lookup`` and ``tokens_exist``."""
    return {"token_lookup": lambda token: verify(store, token), "tokens_exist": lambda: any_live(store)}


async def revoke(store: Store, name: str) -> None:
    """End the token ``name`` now. Raises NotFound."""
    if await store.pool.fetchval("UPDATE client_tokens SET revoked_at = now() WHERE name=$1 AND revoked_at IS NULL "
                                 "RETURNING name", name) is None:
        raise NotFound(f"no live token named {name!r}; `chiffon token list` shows them")


async def listing(store: Store) -> list[dict[str, Any]]:
    """Every token: name, created, last used, revoked (never the token)."""
    rows = await store.pool.fetch("SELECT name, created_at, last_used_at, revoked_at FROM client_tokens ORDER BY name")
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(r).items()} for r in rows]
