"""The embedded PostgreSQL and Redis (``embedded:``)."""

from __future__ import annotations

from pydantic import Field

from chiffon.shared.config.base import Section


class EmbeddedSettings(Section):
    """The embedded PostgreSQL and Redis started when no URL is set (shared.embedded)."""

    idle_stop_s: float = Field(
        3600.0, ge=0, description="Stop a home's embedded servers once neither has had a client this long, seconds "
                                  "(a watchdog process per home); 0 keeps them up until `chiffon down`.")
