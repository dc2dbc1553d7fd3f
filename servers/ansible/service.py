"""The ansible server's collaborators: the runtime and a cache of repo catalogs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from servers.ansible.catalog import Catalog
from servers.ansible.runner import TaskEvent
from shared.config import PROJECT_ROOT
from shared.runtime import Runtime

if TYPE_CHECKING:  # the CLI imports this module; keep fastmcp (about 2 s of imports) off its path
    from fastmcp import Context

EXAMPLE_REPO = PROJECT_ROOT / "examples" / "homelab-infra"
_WATCHED = ("*.yml", "*.yaml", "*.ini", "*.cfg")


def _fingerprint(root: Path) -> tuple[tuple[str, float], ...]:
    files = [p for pattern in _WATCHED for p in root.rglob(pattern) if ".git" not in p.parts]
    return tuple(sorted((str(p), p.stat().st_mtime) for p in files))


@dataclass
class AnsibleService:
    """What the ansible tools need: the runtime and the IaC repo they work on."""

    rt: Runtime
    repo: Path
    _cache: dict[Path, tuple[tuple[tuple[str, float], ...], Catalog]] = field(default_factory=dict)

    @classmethod
    def for_runtime(cls, rt: Runtime, repo: Path | None = None) -> AnsibleService:
        """Bind to ``repo``, else ``CHIFFON_REPO``, else the bundled example repo."""
        return cls(rt, (repo or rt.settings.repo or EXAMPLE_REPO).expanduser().resolve())

    def _load(self, root: Path) -> Catalog:
        stamp = _fingerprint(root) if root.is_dir() else ()
        cached = self._cache.get(root)
        if cached and cached[0] == stamp:
            return cached[1]
        catalog = Catalog.load(root, self.rt.settings.ansible.inventory)
        self._cache[root] = (stamp, catalog)
        return catalog

    async def catalog(self, repo: Path | None = None) -> Catalog:
        """The catalog of ``repo`` (default: the bound repo), rescanned when files change.

        Raises:
            RepoError: not a git repo, or no playbooks.
        """
        return await asyncio.to_thread(self._load, (repo or self.repo).expanduser().resolve())


def progress_reporter(ctx: "Context | None", total: int | None, verb: str) -> Callable[[TaskEvent], Awaitable[None]] | None:
    """An ``on_event`` callback that sends MCP progress: ``progress`` = task results so far."""
    if ctx is None:
        return None

    async def report(event: TaskEvent) -> None:
        note = " (changed)" if event.changed else ""
        await ctx.report_progress(
            event.seq, max(total or 0, event.seq) if total else None,
            f"{verb}: {event.task} on {event.host}: {event.status}{note}",
        )

    return report
