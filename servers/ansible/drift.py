"""Drift: where the hosts no longer match what the IaC repo says.

:func:`run_drift` runs check mode (``--check --diff``) of every unit of the repo's catalog with the machinery a
plan's check uses: :func:`plans.check_problems` (inventory, prompts, the vault rules), :func:`outside.scope` and
:func:`snapshot.take` (the repo pinned, code outside it named), :func:`plans.run_check` (the snapshot's inventory,
the allow-listed environment ``ansible.pass_env``, the check timeout, secrets masked by value before anything is
kept). It stores no plan and writes no audit commit per unit: one report per run, in ``drift_reports``
(migration 017).

Which units (:func:`drift_units`): each playbook with plays of its own (one made only of ``import_playbook``
lines is covered by what it imports), as a whole; or, when every role and task file it applies has a tag of its
own and it has no tasks outside them, each of those as the unit ``--tags`` selects, so that a report names the role
that drifted and ``--plan`` fixes only that. Units are grouped by the hosts their plays target; the groups are
checked one after another, at most ``drift.concurrency`` units of a group at once.

What a unit's check gives:

- **drifted**: a unit chiffon has run (a run of a plan of its playbook, or of a playbook importing it, with its tag
  or none) whose check would change tasks: one entry per host, each task with its module, a one-line summary and
  the redacted diff;
- **never_run**: the same for a unit chiffon never ran: the hosts differ because the repo was never applied
  there, which is not drift;
- **clean**: nothing would change (also: every task skipped by a condition, or no host of the inventory matched,
  with a note);
- **errors**: the unit could not be checked (no inventory, a vault password missing, a module or role not
  installed, the check failing on a host), with the reason; the other units are checked all the same.

A ``changed`` from a command module (``command``, ``shell``, ``raw``, ``script``) is never drift: check mode
skips commands, or runs them for real (``check_mode: false``) where their ``changed`` says nothing about the host.

**New drift**, a ``(host, unit)`` pair drifted now and not in the repo's previous report, is reported once on the
error bus (source ``drift``, type ``drift_found``, severity ``warning``, context ``host``: the correlator opens an
incident) and to ``notify`` (the inbox and Apprise, given by the composition root); drift already reported is
not reported again. ``chiffon_drift_tasks{host,unit}`` follows the newest report.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from chiffon.servers.ansible import outside, plans, preview, snapshot
from chiffon.servers.ansible.catalog import Catalog, Unit
from chiffon.servers.ansible.events import Outcome
from chiffon.servers.ansible.risk import COMMAND_MODULES
from chiffon.shared import metrics
from chiffon.shared.error_bus import report_error
from chiffon.shared.errors import ChiffonError, InvalidInput
from chiffon.shared.redact import redact_text
from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

MAX_DIFF_CHARS = 4000  # per task and host: enough for a config file's change, never a whole rendered file
MAX_UNIT_CHARS = 300  # a unit id given to --plan (ids are repo paths plus ``::role:NAME``)
Progress = Callable[[int, int, str], Awaitable[None]]  # (units done, units in all, what was just checked)
Notify = Callable[[str, dict[str, Any]], Awaitable[None]]  # (title, body): to the humans (inbox, Apprise)
# check_findings' blocked reasons that mean "nothing to check here", not "could not check"
_NOTHING_TO_CHECK = ("no host of inventory", "every task was skipped")


class DriftTask(BaseModel):
    """A task check mode would change on a host."""

    task: str = Field(description="Task name (masked).")
    module: str = Field(description="Module, e.g. ansible.builtin.template.")
    summary: str = Field(description="One line: the file and the lines that differ, or Ansible's message.")
    diff: str = Field("", description="The predicted unified diff, secrets masked, cut at 4,000 characters.")


class HostDrift(BaseModel):
    """One unit on one host: what check mode would change there."""

    unit: str = Field(description="Unit id (a playbook, or playbook::role:NAME / ::tasks:FILE).")
    playbook: str = Field(description="Playbook path relative to the repo.")
    host: str = Field(description="Inventory host.")
    tasks: list[DriftTask] = Field(description="The tasks that would change, in order.")


class CleanUnit(BaseModel):
    """A unit whose check would change nothing."""

    unit: str
    playbook: str
    hosts: list[str] = Field(description="Hosts the check reached.")
    note: str | None = Field(None, description="Why nothing was compared, when so (every task skipped, no host).")


class UnitError(BaseModel):
    """A unit that could not be checked, and why (with the fix where there is one)."""

    unit: str
    playbook: str
    reason: str


class DriftReport(BaseModel):
    """One drift run over a repo: per unit and host, where the hosts differ from what the repo says."""

    id: str = Field(description="Report id, e.g. drift-3f9a2c1d7b.")
    repo: str = Field(description="Absolute path of the IaC repo.")
    repo_commit: str | None = Field(None, description="Git commit of the repo when checked.")
    units: int = Field(description="Units checked.")
    drifted: list[HostDrift] = Field(description="Units chiffon has run whose hosts would change: drift.")
    never_run: list[HostDrift] = Field(description="Units chiffon never ran whose hosts would change: not drift, "
                                                   "the repo was never applied there.")
    clean: list[CleanUnit] = Field(description="Units where nothing would change.")
    errors: list[UnitError] = Field(description="Units that could not be checked, with the reason.")
    new_drift: list[dict[str, str]] = Field(default_factory=list, description="[{host, unit}] drifted now and not "
                                                                              "in the previous report.")
    duration_s: float = Field(description="Wall time of the run, seconds.")
    created_at: datetime | None = None

    def summary(self) -> dict[str, Any]:
        """The ``chiffon drift --json`` object: ``{repo, drifted: [{unit, playbook, host, tasks}], clean, errors,
        never_run}``."""
        return {"repo": self.repo, "drifted": [d.model_dump() for d in self.drifted],
                "clean": [c.model_dump() for c in self.clean], "errors": [e.model_dump() for e in self.errors],
                "never_run": [d.model_dump() for d in self.never_run]}

    @property
    def exit_code(self) -> int:
        """0 clean (never-run units included), 1 drift found, 2 errors and no drift."""
        return 1 if self.drifted else 2 if self.errors else 0


def drift_units(catalog: Catalog) -> list[Unit]:
    """The units a drift run checks, each task of the repo once (see the module docstring), in catalog order."""
    chosen: list[Unit] = []
    for pb in catalog.playbooks.values():
        if not pb.plays:
            continue  # only import_playbook lines: what it imports is checked on its own
        mine = [u for u in catalog.units if u.playbook is pb]
        whole = next(u for u in mine if u.kind == "playbook")
        parts = [u for u in mine if u.kind in ("role", "tasks")]
        containers = {u.role_name for u in parts if u.kind == "tasks" and u.role is not None}
        tags = [u.tags for u in parts]
        separate = (parts and not pb.tasks and not containers and all(tags) and len(set(tags)) == len(tags)
                    and all(not u.warnings for u in parts))
        chosen += parts if separate else [whole]
    return chosen


def _group(unit: Unit) -> str:
    assert unit.playbook is not None
    return ",".join(unit.hosts or unit.playbook.host_patterns) or "all"


async def _ran(rt: Runtime, catalog: Catalog) -> set[tuple[str, tuple[str, ...]]]:
    """``(playbook, tags)`` of every plan of this repo that has a run."""
    rows = await rt.store.pool.fetch(
        "SELECT DISTINCT p.playbook, p.tags FROM plans p JOIN runs r ON r.plan_id = p.id WHERE p.repo = $1",
        str(catalog.root))
    return {(r["playbook"], tuple(r["tags"] or ())) for r in rows}


def has_run(catalog: Catalog, unit: Unit, ran: set[tuple[str, tuple[str, ...]]]) -> bool:
    """Whether ``unit`` was ever applied by a run: of its playbook or one importing it, with no tags (the whole
    playbook), or with its tag; a whole-playbook unit counts as applied by any run of its playbook."""
    assert unit.playbook is not None
    names = {unit.playbook.name, *(pb.name for pb in catalog.importers(unit.playbook))}
    for playbook, tags in ran:
        if playbook in names and (not tags or not unit.tags or set(unit.tags) <= set(tags)):
            return True
    return False


def _summary(diff: str, message: str) -> str:
    """One line for a changed task: ``/srv/redis/redis.conf: +1 -1 line(s)`` (the host's file, Ansible's
    before_header), ``new file: +9 line(s)``, else the first change, else Ansible's message."""
    lines = diff.splitlines()
    target = next((ln[4:].strip().removeprefix("before: ") for ln in lines if ln.startswith("--- ")), "")
    changes = [ln for ln in lines if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    added, removed = sum(ln.startswith("+") for ln in changes), sum(ln.startswith("-") for ln in changes)
    if target in ("", "before") and changes and not removed and any(ln.startswith("+++ ") for ln in lines) and \
            "@@ -0,0 " in diff:
        return f"new file: +{added} line(s)"
    if target.startswith("/"):
        return " ".join(f"{target}: +{added} -{removed} line(s)".split())[:200]
    if changes:
        return " ".join(" ".join(changes[:2]).split())[:200]
    return " ".join((message or "would change").split())[:200]


def _host_drift(unit: Unit, outcome: Outcome) -> list[HostDrift]:
    """What the check says would change, per host, without commands and fact gathering."""
    assert unit.playbook is not None
    diffs: dict[tuple[str, str], list[str]] = {}
    for d in outcome.diffs:
        diffs.setdefault((d["host"], d["task"]), []).append(d["diff"])
    per_host: dict[str, list[DriftTask]] = {}
    for event in outcome.events:
        if not event.changed or event.status != "ok" or event.module in COMMAND_MODULES or \
                event.module in preview.FACT_MODULES:
            continue
        text = redact_text("".join(diffs.get((event.host, event.task), [])))
        cut = text if len(text) <= MAX_DIFF_CHARS else text[:MAX_DIFF_CHARS] + \
            f"\n... ({len(text) - MAX_DIFF_CHARS} more characters)\n"
        per_host.setdefault(event.host, []).append(DriftTask(task=event.task, module=event.module,
                                                             summary=_summary(text, event.message), diff=cut))
    return [HostDrift(unit=unit.id, playbook=unit.playbook.name, host=host, tasks=tasks)
            for host, tasks in sorted(per_host.items())]


def _failure(outcome: Outcome) -> str:
    first = outcome.failures[0] if outcome.failures else {}
    where = " on ".join(str(x) for x in (first.get("task"), first.get("host")) if x)
    message = " ".join(str(first.get("message") or "").split())[:400]
    return f"the check failed ({outcome.status}){': ' + where if where else ''}: {message}".rstrip(": ")


class _Checker:
    """Checks units of one catalog for one report: views per project, snapshots shared between units that pin
    the same paths."""

    def __init__(self, rt: Runtime, catalog: Catalog, inventory: str | None, report_id: str) -> None:
        self.rt, self.catalog, self.inventory = rt, catalog, inventory
        self.folder = rt.settings.runs_dir / report_id
        self._views: dict[str, Catalog] = {}
        self._snaps: dict[tuple[str, ...], asyncio.Task[snapshot.Snapshot]] = {}

    def view(self, unit: Unit) -> Catalog:
        assert unit.playbook is not None
        project = self.catalog.project_for(unit.playbook.name)
        if project.dir not in self._views:
            self._views[project.dir] = self.catalog.using(project, self.inventory)
        return self._views[project.dir]

    async def snap(self, pinned: list[Path]) -> snapshot.Snapshot:
        key = tuple(sorted(str(p) for p in pinned))
        if key not in self._snaps:
            self._snaps[key] = asyncio.ensure_future(asyncio.to_thread(
                snapshot.take, self.catalog.root, self.rt.settings.snapshots_dir, pinned))
        return await asyncio.shield(self._snaps[key])

    async def check(self, index: int, unit: Unit) -> tuple[Outcome | None, str | None, str | None]:
        """``(outcome, error, note)`` of one unit's check; ``error`` when it could not be checked."""
        assert unit.playbook is not None
        pb = unit.playbook
        try:
            view = self.view(unit)
            tags = preview.validate_tags(view, pb, list(unit.tags), "tags")
            problems, vault = await asyncio.to_thread(plans.check_problems, self.rt, view, pb, {})
            if problems:
                return None, "; ".join(dict.fromkeys(problems)), None
            live = [n.split(": ", 1)[1] for n in preview.check_mode_notes(view, pb, unit)
                    if n.startswith("runs even in check mode")]
            if live and not self.rt.settings.drift.live_tasks:  # nobody approves a drift run: nothing runs for real
                return None, (f"not checked: {'; '.join(live)} runs for real even in check mode, and drift runs with "
                              "no human approving; plan it to check it, or set drift.live_tasks: true"), None
            pinned, _ = await asyncio.to_thread(outside.scope, view, pb, unit, vault)
            snap = await self.snap(pinned)
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", unit.id)[:80]
            # two checks starting at once can race in filelock's fork hooks: runner.run_playbook starts again
            outcome = await plans.run_check(self.rt, view, snap, pb.name, self.folder / f"{index:03d}-{slug}",
                                            inventory=view.inventory, vault=vault, project=view.project, tags=tags)
        except (ChiffonError, OSError) as exc:
            return None, str(exc), None
        _, blocked = await asyncio.to_thread(preview.check_findings, view, pb, unit, outcome)
        if blocked and blocked.startswith(_NOTHING_TO_CHECK):
            return outcome, None, blocked
        if blocked:
            return outcome, blocked, None
        if outcome.status != "successful":
            return outcome, _failure(outcome), None
        return outcome, None, None


async def run_drift(rt: Runtime, catalog: Catalog, *, inventory: str | None = None,
                    on_progress: Progress | None = None, notify: Notify | None = None) -> DriftReport:
    """Check every unit of ``catalog`` (:func:`drift_units`) in check mode and store the report.

    Args:
        inventory: an inventory name or repo-relative path; None: each Ansible project's default.
        on_progress: awaited after each unit with ``(done, total, unit name)``.
        notify: awaited once with ``(title, body)`` when there is new drift (the inbox and Apprise).

    Returns the stored :class:`DriftReport`. Units that cannot be checked are in ``errors``; nothing about one
    unit stops the others.

    Raises:
        StoreUnavailable: PostgreSQL cannot store the report.
    """
    started = time.perf_counter()
    report_id = plans.new_id("drift")
    units = drift_units(catalog)
    ran = await _ran(rt, catalog)
    checker = _Checker(rt, catalog, inventory, report_id)
    groups: dict[str, list[tuple[int, Unit]]] = {}
    for index, unit in enumerate(units):
        groups.setdefault(_group(unit), []).append((index, unit))
    results: dict[int, tuple[Outcome | None, str | None, str | None]] = {}
    gate = asyncio.Semaphore(rt.settings.drift.concurrency)

    async def one(index: int, unit: Unit) -> None:
        async with gate:
            results[index] = await checker.check(index, unit)
        if on_progress is not None:
            await on_progress(len(results), len(units), unit.name)

    for members in groups.values():  # one host group at a time
        await asyncio.gather(*(one(i, u) for i, u in members))
    report = _assemble(report_id, catalog, units, results, ran, time.perf_counter() - started)
    previous = await last_report(rt, catalog.root)
    known = {(d.host, d.unit) for d in previous.drifted} if previous else set()
    report.new_drift = [{"host": d.host, "unit": d.unit} for d in report.drifted if (d.host, d.unit) not in known]
    created = await rt.store.pool.fetchval(
        "INSERT INTO drift_reports (id, repo, repo_commit, units, drifted, clean, errors, never_run, new_drift, "
        "duration_s) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING created_at",
        report.id, report.repo, report.repo_commit, report.units, [d.model_dump() for d in report.drifted],
        [c.model_dump() for c in report.clean], [e.model_dump() for e in report.errors],
        [d.model_dump() for d in report.never_run], report.new_drift, report.duration_s)
    report.created_at = created
    await refresh_gauge(rt)
    await _announce(report, notify)
    log.info("drift %s: %d unit(s), %d drifted host/unit pair(s) (%d new), %d never run, %d error(s) in %.1f s",
             report.id, report.units, len(report.drifted), len(report.new_drift), len(report.never_run),
             len(report.errors), report.duration_s)
    return report


def _assemble(report_id: str, catalog: Catalog, units: list[Unit],
              results: dict[int, tuple[Outcome | None, str | None, str | None]],
              ran: set[tuple[str, tuple[str, ...]]], duration_s: float) -> DriftReport:
    drifted: list[HostDrift] = []
    never: list[HostDrift] = []
    clean: list[CleanUnit] = []
    errors: list[UnitError] = []
    for index, unit in enumerate(units):
        assert unit.playbook is not None
        outcome, error, note = results[index]
        found = _host_drift(unit, outcome) if outcome is not None else []
        (drifted if has_run(catalog, unit, ran) else never).extend(found)
        if error is not None:
            errors.append(UnitError(unit=unit.id, playbook=unit.playbook.name, reason=error))
        elif not found:
            clean.append(CleanUnit(unit=unit.id, playbook=unit.playbook.name,
                                   hosts=outcome.hosts if outcome else [], note=note))
    return DriftReport(id=report_id, repo=str(catalog.root), repo_commit=catalog.commit, units=len(units),
                       drifted=drifted, never_run=never, clean=clean, errors=errors, duration_s=round(duration_s, 3))


async def _announce(report: DriftReport, notify: Notify | None) -> None:
    """New drift to the error bus (one event per pair: the correlator opens or joins the host's incident) and,
    once for the report, to ``notify``."""
    if not report.new_drift:
        return
    new = {(n["host"], n["unit"]) for n in report.new_drift}
    fresh = [d for d in report.drifted if (d.host, d.unit) in new]
    for d in fresh:
        names = ", ".join(t.task for t in d.tasks[:3]) + (", ..." if len(d.tasks) > 3 else "")
        report_error("drift", "drift_found", f"{d.host} has drifted from {report.repo}: {d.unit} would change "
                     f"{len(d.tasks)} task(s) ({names}); `chiffon drift --plan {d.unit}` plans the fix",
                     "warning", {"host": d.host})
    if notify is not None:
        hosts = sorted({d.host for d in fresh})
        title = f"drift: {', '.join(hosts)} no longer match {Path(report.repo).name} ({len(fresh)} unit/host pair(s))"
        body = {"report": report.id, "repo": report.repo,
                "new": [{"host": d.host, "unit": d.unit, "tasks": [t.task for t in d.tasks]} for d in fresh]}
        try:
            await notify(title, body)
        except (ChiffonError, OSError) as exc:  # the report is stored; the incident still says it
            log.warning("drift %s: the notification could not be sent: %s", report.id, exc)


def _counts(reports: list[DriftReport]) -> dict[tuple[str, str], int]:
    """``(host, unit) -> tasks`` over ``reports`` (one per repo: two repos with the same unit on a host add up)."""
    counts: dict[tuple[str, str], int] = {}
    for d in (d for r in reports for d in r.drifted):
        counts[(d.host, d.unit)] = counts.get((d.host, d.unit), 0) + len(d.tasks)
    return counts


def _report(row: Any) -> DriftReport:
    data = dict(row)
    return DriftReport(**data)


async def last_report(rt: Runtime, repo: Path | None = None) -> DriftReport | None:
    """The newest drift report of ``repo`` (of any repo when None), or None when there is none."""
    row = await rt.store.pool.fetchrow(
        "SELECT * FROM drift_reports WHERE ($1::text IS NULL OR repo = $1) ORDER BY created_at DESC LIMIT 1",
        str(repo.expanduser().resolve()) if repo is not None else None)
    return _report(row) if row is not None else None


async def refresh_gauge(rt: Runtime) -> None:
    """Set ``chiffon_drift_tasks`` from the newest report of each repo: after each drift run, and before each scrape
    of the serving process (the timer's ``chiffon drift`` has exited by then)."""
    rows = await rt.store.pool.fetch("SELECT DISTINCT ON (repo) * FROM drift_reports ORDER BY repo, created_at DESC")
    metrics.set_drift(_counts([_report(r) for r in rows]))


async def plan_fix(rt: Runtime, catalog: Catalog, unit_id: str, *, inventory: str | None = None,
                   on_event: Any = None) -> plans.Plan:
    """A plan, pending approval like any other, that puts a drifted unit back as the repo says: check mode of the
    unit with ``--limit`` the hosts the newest report found drifted (or, for a never-run unit, would change), through
    :func:`plans.create_plan`. Nothing is run or stored when the unit is refused.

    Raises:
        InvalidInput: ``unit_id`` is not a unit of the repo (the drifted ones are listed), there is no drift report
            of the repo yet, or the unit did not drift in the newest report.
    """
    if not isinstance(unit_id, str) or not unit_id.strip() or len(unit_id) > MAX_UNIT_CHARS:
        raise InvalidInput("unit", f"give a unit id from `chiffon drift` (at most {MAX_UNIT_CHARS} characters)")
    last = await last_report(rt, catalog.root)
    listed = sorted({d.unit for d in (last.drifted + last.never_run)}) if last else []
    known = {u.id: u for u in catalog.units if u.playbook is not None}
    if unit_id not in known:
        raise InvalidInput("unit", f"{unit_id!r} is not a unit of {catalog.root}; "
                                   + (f"the newest drift report lists: {', '.join(listed)}" if listed else
                                      "no unit has drifted (`chiffon drift` lists them)") + ". Nothing was planned.")
    if last is None:
        raise InvalidInput("unit", f"there is no drift report of {catalog.root} yet: run `chiffon drift` first. "
                                   "Nothing was planned.")
    entries = [d for d in last.drifted + last.never_run if d.unit == unit_id]
    if not entries:
        raise InvalidInput("unit", f"{unit_id!r} did not drift in the newest drift report ({last.id}); "
                                   + (f"it lists: {', '.join(listed)}" if listed else "no unit has drifted")
                                   + ". Nothing was planned.")
    unit = known[unit_id]
    assert unit.playbook is not None
    view = catalog.using(catalog.project_for(unit.playbook.name), inventory)
    hosts = sorted({d.host for d in entries})
    return await plans.create_plan(
        rt, view, unit.playbook.name, request=f"Put {unit.name} back as the repo says on {', '.join(hosts)} "
                                              f"(drift report {last.id})",
        tags=list(unit.tags), unit=unit, limit=",".join(hosts), on_event=on_event)
