"""How a plan and a run's outcome print: the plan table with its diff, and the ``--json`` summary.

Every string from the repo, the request or Ansible is escaped before rich sees it.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from chiffon.orchestrator.cli.common import out

if TYPE_CHECKING:
    from chiffon.servers.ansible import execution, plans


def show_plan(plan: plans.Plan) -> None:
    """Print a plan: what, where, risk, why it was chosen, warnings, and the check-mode diff.

    Every string from the repo, the request or Ansible is escaped: a path or task name holding
    ``[bold]`` or ``[/]`` prints as written and never breaks or restyles the terminal.
    """
    table = Table(title=f"Plan {escape(plan.id)}", show_header=False, title_justify="left")
    table.add_row("request", escape(plan.request or "-"))
    table.add_row("playbook", escape(plan.playbook))
    table.add_row("tags", escape(", ".join(plan.tags)) or "- (the whole playbook)")
    if plan.skip_tags:
        table.add_row("skip tags", escape(", ".join(plan.skip_tags)))
    table.add_row("inventory", escape(plan.inventory))
    if plan.host_limit:
        table.add_row("limit", escape(plan.host_limit))
    if plan.match:
        table.add_row("matched", escape(f"score {plan.match['score']}: {plan.match['reason']}"))
        planner = plan.match.get("planner") or {}
        if planner.get("reason") or planner.get("explanation"):  # explanation: plans stored before 0.1 (#20)
            table.add_row("why", escape(planner.get("reason") or planner["explanation"]))
    table.add_row("hosts", escape(", ".join(plan.hosts)) or "-")
    table.add_row("extra vars", escape(json.dumps(plan.extra_vars)) if plan.extra_vars else "-")
    colour = {"low": "green", "medium": "yellow", "high": "red"}[plan.risk]
    table.add_row("risk", f"[{colour}]{plan.risk}[/]: " + escape("; ".join(plan.risk_reasons)))
    changed = (plan.check_result or {}).get("changed", 0)
    table.add_row("check mode", escape(f"{(plan.check_result or {}).get('status')}, {changed} change(s) predicted"))
    failures = (plan.check_result or {}).get("failures") or []
    if failures:
        first = failures[0]
        where = " ".join(x for x in (first.get("task") or "", f"on {first['host']}" if first.get("host") else "") if x)
        table.add_row("[red]check failure[/]", escape(f"{where}: {first.get('message')}"[:600] if where
                                                      else str(first.get("message"))[:600]))
    for warning in plan.warnings:
        table.add_row("[yellow]warning[/]", escape(warning))
    for check in plan.expectations:
        table.add_row("checked after", escape(f"{check['name']} ({check['kind']} {check['target']}, on "
                                             f"{check['hosts']}; {check['source']})"))
    if plan.blocked_reason:
        table.add_row("[red]cannot approve[/]", escape(plan.blocked_reason))
    out.print(table)
    if plan.generated_playbook:
        out.print("generated playbook (runs from this plan; nothing is written to the repo):")
        out.print(Syntax(plan.generated_playbook, "yaml", theme="ansi_dark", word_wrap=True))
    if plan.diff:
        out.print(Syntax(plan.diff, "diff", theme="ansi_dark", word_wrap=True))


OUTCOME_COLOURS = {"achieved": "green", "partial": "yellow", "failed": "red", "cancelled": "red"}


def print_outcome(result: execution.RunResult, tags: list[str]) -> None:
    """A finished run, outcome first: ``partial: Uptime Kuma is not running: ...``, then the other reasons, the
    checks, what was skipped and with which condition, and Ansible's figures."""
    outcome = result.outcome or result.status
    reasons = result.outcome_reasons or ["-"]
    out.print(f"[{OUTCOME_COLOURS.get(outcome, 'red')}]{outcome}[/]: " + escape(reasons[0]), soft_wrap=True)
    for reason in reasons[1:]:
        out.print("  " + escape(reason), soft_wrap=True)
    for check in result.checks:
        mark = "[green]verified[/]" if check["ok"] else "[red]not verified[/]"
        out.print(f"  {mark} " + escape(f"{check['name']}: {check['evidence']}"), soft_wrap=True)
    for skip in result.skipped:
        out.print("  [dim]skipped[/] " + escape(f"{skip['task']} on {skip['host']}: {skip['condition']}"),
                  soft_wrap=True)
    target = result.playbook + (f" --tags {','.join(tags)}" if tags else "")
    out.print(escape(f"ansible: {result.status} (rc {result.rc}), {target} on {', '.join(result.hosts)}, "
                     f"{result.changed} change(s), audit commit "
                     f"{result.audit_commit[:12] if result.audit_commit else '-'}"))


def summary(plan: plans.Plan, status: str, result: execution.RunResult | None, started: float) -> dict[str, Any]:
    """The one JSON object of ``chiffon run/execute --json`` (keys listed in the README): ``outcome``,
    ``outcome_reasons`` and ``checks`` first (whether what was asked for happened), then ``status`` (the plan's)."""
    data = result.artifact_data if result else {}
    return {
        **({"outcome": result.outcome, "outcome_reasons": result.outcome_reasons, "checks": result.checks,
            "skipped": result.skipped} if result else {}),
        "expectations": plan.expectations, "last_outcome": plan.last_outcome,
        "plan_id": plan.id, "status": status, "playbook": plan.playbook, "tags": plan.tags,
        "skip_tags": plan.skip_tags, "limit": plan.host_limit, "inventory": plan.inventory,
        "planner": (plan.match or {}).get("planner"),
        "hosts": result.hosts if result else plan.hosts, "changed": result.changed if result else 0,
        "monitors": result.monitors if result else None,
        **({"container_started": _truthy(data["container_started"])} if "container_started" in data else {}),
        "warnings": [*plan.warnings, *(result.warnings if result else [])],
        **({"blocked_reason": plan.blocked_reason} if plan.blocked_reason else {}),
        "audit_commit": result.audit_commit if result else plan.audit_commit,
        "duration_s": round(time.perf_counter() - started, 3),
        **({"run_id": result.run_id, "failure": result.failure} if result else {}),
    }


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def report_new_plan(plan: plans.Plan, started: float, as_json: bool, *, extra: dict[str, Any] | None = None,
                    what: str = "", shown: bool = False) -> int:
    """Print a plan just made (``--json``: :func:`summary` plus ``extra``; else :func:`show_plan`, unless the
    caller ``shown`` it already), then what follows on stderr; the exit code: 2 when it is blocked, 3 when it
    awaits approval. ``what``: what the plan does, for the last line (``undoes run-…``)."""
    from chiffon.orchestrator.cli.common import EXIT_AWAITING, EXIT_ERROR, err

    if as_json:
        status = "blocked" if plan.blocked_reason else "awaiting_approval"
        out.print_json(json.dumps({**summary(plan, status, None, started), **(extra or {})}, default=str))
    elif not shown:
        show_plan(plan)
    if plan.blocked_reason:
        err.print(escape(f"plan {plan.id} cannot be approved as-is: {plan.blocked_reason}. Nothing changed."),
                  highlight=False, soft_wrap=True)
        return EXIT_ERROR
    err.print(escape(f"plan {plan.id} {what + ' and ' if what else ''}awaits approval; nothing changed. Approve with "
                     f"`chiffon approve {plan.id}`, then `chiffon execute {plan.id}`."), highlight=False, soft_wrap=True)
    return EXIT_AWAITING
