"""One possible answer to a request: a ranked unit with the entity that named it and the evidence.

Made by :mod:`.understand` and read by :mod:`.where` (which picks its inventory and limit), so it lives apart
from both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chiffon.servers.ansible import matching
from chiffon.servers.ansible.catalog import Unit
from chiffon.servers.ansible.commands import Command


@dataclass
class Candidate:
    """One possible answer: the ranked match (score adjusted), the entity that named it, and the evidence."""

    match: matching.Match
    entity: str | None = None
    action: str = "deploy"
    commands: list[Command] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)

    @property
    def unit(self) -> Unit:
        """The unit this candidate runs."""
        return self.match.unit

    @property
    def key(self) -> tuple[str, tuple[str, ...], str]:
        """What a plan of it would run: playbook, tags and play hosts (two plays of one role differ by hosts)."""
        unit = self.unit
        hosts = ",".join(unit.hosts) if unit.kind in ("role", "play", "tasks") else ""
        return (unit.playbook.name if unit.playbook else f"role {unit.role_name}", unit.tags, hosts)

    def as_dict(self) -> dict[str, object]:
        """JSON-ready: the match, plus ``entity``, ``action`` and ``evidence``."""
        return {**self.match.as_dict(), "entity": self.entity, "action": self.action, "evidence": self.evidence}
