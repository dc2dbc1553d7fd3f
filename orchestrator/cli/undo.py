"""``chiffon undo RUN``: a plan that puts back what a finished run changed (:mod:`servers.ansible.undo_plan`).

Exit codes: 3 the undo plan awaits a human's approval (nothing changed: ``chiffon approve PLAN``, then ``chiffon
execute PLAN``), 2 bad input (a run id that is not one, a run not ended, nothing to put back; nothing is stored) or
a plan that cannot be approved as-is.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from chiffon.orchestrator.cli.common import (
    ConfigOpt,
    JsonOpt,
    out,
    progress_bar,
    run_or_exit,
    settings_or_exit,
)
from chiffon.shared.logs import setup_logging

if TYPE_CHECKING:
    from chiffon.servers.ansible.events import TaskEvent
    from chiffon.servers.ansible.undo_plan import UndoPlan
    from chiffon.shared.config import Settings

app = typer.Typer()


@app.command("undo")
def undo_cmd(
    run_id: Annotated[str, typer.Argument(
        help="The run to undo (run- and 10 hex digits), as `chiffon status PLAN` and `--json` of run/execute show it.")],
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Plan the undo of a finished run: a generated playbook that puts back the files it changed (earlier content,
    mode and owner; what it created is removed) from the before-states the run kept, on the hosts where they
    changed. Shown with its check-mode diff and stored pending approval like any plan; what cannot be undone this
    way (packages, commands, services, containers) is listed as not reversible."""
    setup_logging(verbose)
    settings = settings_or_exit(config)
    raise typer.Exit(run_or_exit(_undo(settings, run_id, as_json)))


async def _undo(settings: Settings, run_id: str, as_json: bool) -> int:
    from chiffon.orchestrator.cli.render import report_new_plan, show_plan
    from chiffon.orchestrator.compose import infra_service
    from chiffon.servers.ansible import undo_plan
    from chiffon.shared.runtime import open_runtime

    started = time.perf_counter()
    async with open_runtime(settings) as rt:
        svc = infra_service(rt)
        with progress_bar() as bar:
            task = bar.add_task(escape(f"planning the undo of {run_id[:40]}: check mode"), total=None)

            async def on_check(event: TaskEvent) -> None:
                bar.update(task, completed=event.seq, description=escape(f"check: {event.task[:50]} [{event.host}]"))

            undone = await undo_plan.plan_undo(svc, run_id, on_event=on_check)
    if not as_json:
        show_plan(undone.plan)  # then what it puts back and what it cannot
        show_undo(undone)
    return report_new_plan(undone.plan, started, as_json, extra=_undo_fields(undone), what=f"undoes {run_id}",
                           shown=not as_json)


def _undo_fields(undone: UndoPlan) -> dict[str, object]:
    """What ``--json`` adds to the plan's summary: ``undoes``, ``restores`` and ``not_reversible``."""
    return {"undoes": undone.run_id, "restores": [r.model_dump() for r in undone.restores],
            "not_reversible": [x.model_dump() for x in undone.not_reversible]}


def show_undo(undone: UndoPlan) -> None:
    """One line per path put back and per change that is not, after the plan."""
    for r in undone.restores:
        what = {"content": "put back", "remove": "remove (created by the run)", "attrs": "put back mode/owner of"}
        attrs = ", ".join(f"{k} {v}" for k, v in (("mode", r.mode), ("uid", r.owner), ("gid", r.group)) if v is not None)
        out.print(escape(f"{what[r.action]} {r.path} on {r.host}" + (f" ({attrs})" if attrs else "")
                         + (f": {r.note}" if r.note else "")), highlight=False, soft_wrap=True)
    for x in undone.not_reversible:
        out.print("[yellow]not reversible:[/] " + escape(f"{x.task} ({x.module}) on {x.host}: {x.reason}"),
                  highlight=False, soft_wrap=True)
