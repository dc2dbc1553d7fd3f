"""``chiffon drift``: where the hosts no longer match the IaC repo, and ``--plan UNIT`` to put one unit back.

Exit codes: 0 clean (units never run included: that is not drift), 1 drift found, 2 no drift but some units could
not be checked (or bad input, a service unreachable), 3 ``--plan``: the plan awaits a human's approval (nothing
changed).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

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
    from chiffon.servers.ansible.drift import DriftReport, HostDrift
    from chiffon.servers.ansible.events import TaskEvent
    from chiffon.shared.config import Settings

app = typer.Typer()


@app.command("drift")
def drift_cmd(
    repo: Annotated[Path | None, typer.Option(help="IaC repo (default: CHIFFON_REPO or the `repo` key).")] = None,
    inventory: Annotated[str | None, typer.Option(
        help="Inventory: a name from `chiffon inventories` or a path in the repo. Default: each project's own.")] = None,
    plan: Annotated[str | None, typer.Option(
        "--plan", help="Plan the fix of UNIT, a unit the newest drift report lists (it runs no new drift check): "
                       "check mode on its drifted hosts, stored pending approval like any plan.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Check mode of every unit of the repo: which hosts no longer match it (drift), which units never ran, which
    could not be checked. Changes nothing on the hosts except tasks written with `check_mode: false`; stores the
    report (the console and Grafana show the newest)."""
    setup_logging(verbose)
    settings = settings_or_exit(config)
    if plan is not None:
        raise typer.Exit(run_or_exit(_plan(settings, repo, inventory, plan, as_json)))
    raise typer.Exit(run_or_exit(_drift(settings, repo, inventory, as_json)))


async def _drift(settings: Settings, repo: Path | None, inventory: str | None, as_json: bool) -> int:
    from chiffon.orchestrator.compose import infra_service
    from chiffon.servers.ansible import drift
    from chiffon.shared.runtime import open_runtime

    async with open_runtime(settings) as rt:
        svc = infra_service(rt, repo, inventory)
        catalog = await svc.catalog()
        total = len(drift.drift_units(catalog))
        with progress_bar() as bar:
            task = bar.add_task(f"drift: check mode of {total} unit(s)", total=total)

            async def on_progress(done: int, all_units: int, name: str) -> None:
                bar.update(task, completed=done, description=escape(f"drift: checked {name[:60]}"))

            report = await drift.run_drift(rt, catalog, inventory=svc.inventory, on_progress=on_progress,
                                           notify=svc.notify_drift)
    if as_json:
        out.print_json(json.dumps(report.summary()))
    else:
        show_report(report)
    return report.exit_code


def _tasks_cell(entry: HostDrift) -> str:
    return "\n".join(escape(f"{t.task} ({t.module.rsplit('.', 1)[-1]}): {t.summary}") for t in entry.tasks)


def show_report(report: DriftReport) -> None:
    """Print a drift report: drifted units per host with what would change, units never run, errors, a summary."""
    if report.drifted:
        table = Table("unit", "host", "would change", title="Drift: the hosts no longer match the repo",
                      title_justify="left")
        for d in report.drifted:
            table.add_row(escape(d.unit), escape(d.host), _tasks_cell(d))
        out.print(table)
    if report.never_run:
        table = Table("unit", "host", "would change", title="Never run by chiffon (not drift: never applied here)",
                      title_justify="left")
        for d in report.never_run:
            table.add_row(escape(d.unit), escape(d.host), _tasks_cell(d))
        out.print(table)
    if report.errors:
        table = Table("unit", "could not be checked", title="Errors", title_justify="left")
        for e in report.errors:
            table.add_row(escape(e.unit), escape(e.reason))
        out.print(table)
    colour = "red" if report.drifted else "yellow" if report.errors else "green"
    pairs = len(report.drifted)
    out.print(f"[{colour}]{'drift found' if pairs else 'no drift'}[/]: " + escape(
        f"{report.units} unit(s) checked in {report.duration_s:.1f} s: {pairs} drifted unit/host pair(s) "
        f"({len(report.new_drift)} new), {len(report.clean)} clean, {len(report.never_run)} never-run pair(s), "
        f"{len(report.errors)} error(s); report {report.id}"))
    if pairs:
        out.print(escape(f"plan a fix with `chiffon drift --plan {report.drifted[0].unit}`"))


async def _plan(settings: Settings, repo: Path | None, inventory: str | None, unit: str, as_json: bool) -> int:
    from chiffon.orchestrator.cli.render import report_new_plan
    from chiffon.orchestrator.compose import infra_service
    from chiffon.servers.ansible import drift
    from chiffon.shared.runtime import open_runtime

    started = time.perf_counter()
    async with open_runtime(settings) as rt:
        svc = infra_service(rt, repo, inventory)
        catalog = await svc.catalog()
        with progress_bar() as bar:
            task = bar.add_task(escape(f"planning the fix of {unit[:60]}: check mode"), total=None)

            async def on_check(event: TaskEvent) -> None:
                bar.update(task, completed=event.seq, description=escape(f"check: {event.task[:50]} [{event.host}]"))

            plan = await drift.plan_fix(rt, catalog, unit, inventory=svc.inventory, on_event=on_check)
    return report_new_plan(plan, started, as_json)
