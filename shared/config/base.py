"""What every configuration section is built on: unknown keys are errors, and keys that moved say where to."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

CALENDAR = r"^[A-Za-z0-9*:/,. ~-]{1,64}$"  # a systemd OnCalendar expression, one line (it goes into a unit file)


class Section(BaseModel):
    """A configuration section: unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid")


def moved_keys(data: Any, moved: dict[str, str], section: str) -> Any:
    """Refuse keys that moved to another section, naming where they live now (configs written before)."""
    if isinstance(data, dict):
        old = [k for k in moved if k in data]
        if old:
            raise ValueError("; ".join(f"{section}.{k} moved to {moved[k]}" for k in old))
    return data
