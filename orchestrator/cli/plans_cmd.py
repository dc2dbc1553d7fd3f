"""``chiffon plans``: the plans, newest first, by status: what waits for a decision, what ran, what was refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from chiffon.orchestrator.cli.common import ConfigOpt, JsonOpt, out, run_or_exit, settings_or_exit
from chiffon.shared.logs import setup_logging

app = typer.Typer()


class Status(StrEnum):
    """A plan's stored status (:data:`chiffon.servers.ansible.plans.PlanStatus`), as a choice on the command line."""

    pending_approval = "pending_approval"
    approved = "approved"
    paused = "paused"
    rejected = "rejected"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    expired = "expired"


def age(created: datetime, now: datetime) -> str:
    """``created`` as an age from ``now``: ``just now``, ``N min``, ``N h``, ``N d``."""
    seconds = max(0.0, (now - created).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


@app.command("plans")
def plans_cmd(
    status: Annotated[list[Status] | None, typer.Option(
        "--status", "-s", help="Only plans in this status (repeat for several); `--pending` is the same as "
                               "`--status pending_approval`.")] = None,
    pending: Annotated[bool, typer.Option("--pending", help="Only the plans waiting for a decision.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many, newest first.")] = 50,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """The plans, newest first: id, age, status, risk, playbook, hosts and request (`--pending` for those waiting
    for a decision; `chiffon status ID` shows one)."""
    setup_logging()
    from chiffon.servers.ansible import plans
    from chiffon.shared.runtime import open_runtime

    wanted = sorted({s.value for s in status or []} | ({"pending_approval"} if pending else set())) or None

    async def go() -> list[plans.Plan]:
        async with open_runtime(settings_or_exit(config), bus_on_demand=True) as rt:  # a read: no Redis
            return await plans.listing(rt, wanted, limit=limit)

    found = run_or_exit(go())
    if as_json:
        out.print_json(json.dumps({"plans": [
            {"id": p.id, "status": p.status, "risk": p.risk, "playbook": p.playbook, "hosts": p.hosts,
             "repo": str(p.repo), "request": p.request, "blocked_reason": p.blocked_reason,
             "created_at": p.created_at.isoformat()} for p in found]}))
        return
    if not found:
        out.print("no plans" + (f" with status {', '.join(wanted)}" if wanted else ""))
        return
    now = datetime.now(UTC)
    table = Table("plan", "age", "status", "risk", "playbook", "hosts", "request")
    for p in found:
        state = p.status + (" (blocked)" if p.blocked_reason and p.status == "pending_approval" else "")
        table.add_row(p.id, age(p.created_at, now), escape(state), escape(p.risk), escape(p.playbook),
                      escape(", ".join(p.hosts) or p.host_limit or "-"), escape((p.request or "")[:80]))
    out.print(table)
