"""The ansible server's collaborators: the runtime and a cache of repo catalogs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chiffon.servers.ansible.catalog import Catalog, ScanCache
from chiffon.servers.ansible.events import TaskEvent
from chiffon.shared.errors import RepoError
from chiffon.shared.resources import example_repo
from chiffon.shared.runtime import Runtime

if TYPE_CHECKING:  # the CLI imports this module; keep fastmcp (about 2 s of imports) off its path
    from fastmcp import Context

    from chiffon.servers.ansible.execution import RunResult

RunPlan = Callable[..., Awaitable["RunResult"]]  # (rt, plan_id, *, on_event) -> the run's result
NotifyDrift = Callable[[str, dict[str, Any]], Awaitable[None]]  # (title, body)
EXAMPLE_REPO = example_repo()
NO_REPO = (
    "no IaC repo is configured. Set one with CHIFFON_REPO=/path/to/repo, the `repo:` key of chiffon.yaml, "
    "`--repo PATH`, or `chiffon install <client> --repo PATH` (recorded in the IDE's entry). "
    f"To try chiffon on the bundled example, use --repo {EXAMPLE_REPO}."
)


@dataclass
class AnsibleService:
    """What the ansible tools need: the runtime and the IaC repo they work on."""

    rt: Runtime
    repo: Path | None
    inventory: str | None = None
    _caches: dict[Path, ScanCache] = field(default_factory=dict)
    # How an approved plan runs: the one run path (queue, host wait, run), given at construction by the composition
    # root (chiffon.orchestrator.runs.dispatch_run). None: this server was built without one and refuses to run.
    run_plan: RunPlan | None = field(default=None, kw_only=True)
    # Who hears of new drift at once (servers.ansible.drift): the inbox and Apprise, given at construction by the
    # composition root (chiffon.orchestrator.incidents.notify_humans). None: the error bus's incident alone says it.
    notify_drift: NotifyDrift | None = field(default=None, kw_only=True)

    @classmethod
    def for_runtime(cls, rt: Runtime, repo: Path | None = None, inventory: str | None = None, *,
                    run_plan: RunPlan | None = None, notify_drift: NotifyDrift | None = None) -> AnsibleService:
        """Bind to ``repo``, else ``CHIFFON_REPO``; ``inventory`` (a name or path) else ``ansible.inventory``.
        ``run_plan`` and ``notify_drift``: the collaborators the composition root gives (see the fields).

        With neither repo given, the service is bound to no repo: every catalog call raises
        :class:`RepoError` saying how to configure one (the bundled example is used only when asked
        for by path).
        """
        chosen = repo or rt.settings.repo
        return cls(rt, chosen.expanduser().resolve() if chosen else None,
                   inventory or rt.settings.ansible.inventory, run_plan=run_plan, notify_drift=notify_drift)

    def _load(self, root: Path, inventory: str | None) -> Catalog:
        cache = self._caches.setdefault(root, ScanCache())
        return Catalog.load(root, inventory, cache=cache)

    async def catalog(self, repo: Path | None = None, inventory: str | None = None) -> Catalog:
        """The catalog of ``repo`` (default: the bound repo), rescanned incrementally on every call.

        ``inventory``: a name or repo-relative path; default the service's, else ansible.cfg's.

        Raises:
            RepoError: no repo configured, not a directory, or no playbooks and no roles.
            InvalidInput: ``inventory`` names no inventory of the repo.
        """
        root = repo or self.repo
        if root is None:
            raise RepoError(NO_REPO)
        return await asyncio.to_thread(self._load, root.expanduser().resolve(), inventory or self.inventory)


def progress_reporter(ctx: Context | None, total: int | None, verb: str) -> Callable[[TaskEvent], Awaitable[None]] | None:
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
