"""Chat history in PostgreSQL: sessions and messages, per session and per agent, with retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel

from chiffon.shared.errors import InvalidInput, NotFound
from chiffon.shared.store import Store

ROLES = ("system", "user", "assistant", "tool")
MAX_LIMIT = 1000


class ChatMessage(BaseModel):
    """One stored message."""

    id: int
    session_id: str
    role: str
    agent: str | None
    content: str
    tool_calls: Any | None
    tokens: int | None
    at: datetime


def _ident(field: str, value: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > 200:
        raise InvalidInput(field, "must be 1 to 200 characters")
    return value


async def append_message(store: Store, session_id: str, role: str, content: str, *, agent: str | None = None,
                         user_id: str | None = None, tool_calls: Any = None, tokens: int | None = None,
                         max_chars: int = 20_000) -> ChatMessage:
    """Store one message (creating its session on first use).

    NUL characters, which PostgreSQL text cannot hold (model output sometimes has them), become U+FFFD.

    Raises:
        InvalidInput: empty or over-long content, unknown role, bad session id, negative tokens.
    """
    session_id = _ident("session_id", session_id)
    if role not in ROLES:
        raise InvalidInput("role", f"{role!r} is not one of {', '.join(ROLES)}")
    if not content or not content.strip("\x00 \t\r\n"):
        raise InvalidInput("content", "is empty")
    content = content.replace("\x00", "\ufffd")
    if len(content) > max_chars:
        raise InvalidInput("content", f"{len(content)} characters; at most {max_chars} (memory.max_text_chars)")
    if tokens is not None and tokens < 0:
        raise InvalidInput("tokens", "must be >= 0")
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO chat_sessions (id, user_id, agent) VALUES ($1, $2, $3) "
            "ON CONFLICT (id) DO UPDATE SET last_at = now()", session_id, user_id, agent)
        row = await conn.fetchrow(
            "INSERT INTO chat_messages (session_id, role, agent, content, tool_calls, tokens) "
            "VALUES ($1, $2, $3, $4, $5, $6) RETURNING *", session_id, role, agent, content, tool_calls, tokens)
    return ChatMessage(**dict(row))


async def history(store: Store, session_id: str, limit: int = 50, agent: str | None = None) -> list[ChatMessage]:
    """The last ``limit`` messages of a session, oldest first (optionally one agent's only).

    Raises:
        InvalidInput: limit outside 1..1000.
        NotFound: no such session.
    """
    session_id = _ident("session_id", session_id)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be within 1..{MAX_LIMIT}, got {limit}")
    if not await store.pool.fetchval("SELECT 1 FROM chat_sessions WHERE id=$1", session_id):
        raise NotFound(f"no chat session {session_id!r}")
    rows = await store.pool.fetch(
        "SELECT * FROM (SELECT * FROM chat_messages WHERE session_id=$1 AND ($3::text IS NULL OR agent=$3) "
        "ORDER BY at DESC, id DESC LIMIT $2) m ORDER BY at, id", session_id, limit, agent)
    return [ChatMessage(**dict(r)) for r in rows]


async def purge(store: Store, retention_days: int | None, now: datetime | None = None) -> int:
    """Delete messages older than ``retention_days`` (and sessions left empty); returns messages deleted."""
    if retention_days is None:
        return 0
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    result = await store.pool.execute("DELETE FROM chat_messages WHERE at < $1", cutoff)
    await store.pool.execute("DELETE FROM chat_sessions s WHERE last_at < $1 AND NOT EXISTS "
                             "(SELECT 1 FROM chat_messages m WHERE m.session_id = s.id)", cutoff)
    return int(result.split()[-1])
