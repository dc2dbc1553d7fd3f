"""The human's inbox: what agents hand to a person (escalations), in PostgreSQL ``notifications``.

Agents write with :func:`notify` (also announced on the ``notifications`` stream); ``chiffon inbox`` reads with
:func:`messages` and marks one read with :func:`mark_read`.
"""

from __future__ import annotations

import json
from typing import Any

from chiffon.shared.bus import NOTIFICATIONS
from chiffon.shared.errors import NotFound
from chiffon.shared.runtime import Runtime


async def notify(rt: Runtime, task_id: str | None, kind: str, title: str, body: dict[str, Any]) -> int:
    """Put a message in the inbox and on the ``notifications`` stream; its id."""
    note_id = await rt.store.pool.fetchval(
        "INSERT INTO notifications (kind, task_id, title, body) VALUES ($1, $2, $3, $4) RETURNING id",
        kind, task_id, title, json.loads(json.dumps(body, default=str)))
    await rt.bus.publish(NOTIFICATIONS, {"id": note_id, "kind": kind, "task_id": task_id, "title": title})
    return int(note_id)


async def messages(rt: Runtime, *, include_read: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Messages newest first (id, kind, task_id, title, body, created_at, read_at); unread only unless asked."""
    rows = await rt.store.pool.fetch(
        "SELECT id, kind, task_id, title, body, created_at, read_at FROM notifications "
        "WHERE $1 OR read_at IS NULL ORDER BY created_at DESC LIMIT $2", include_read, limit)
    return [dict(r) for r in rows]


async def mark_read(rt: Runtime, message_id: int) -> None:
    """Mark one message read (again: no change). Raises NotFound."""
    done = await rt.store.pool.fetchval(
        "UPDATE notifications SET read_at = coalesce(read_at, now()) WHERE id = $1 RETURNING id", message_id)
    if done is None:
        raise NotFound(f"no inbox message {message_id}")
