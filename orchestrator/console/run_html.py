"""A run as HTML for the console's Runs page, with no web code: the outcome and its reasons at the top, then the
checks, the skipped tasks, the decision and the audit commit, and the coloured task log.

Every string that came from a repo, a request, Ansible or an agent goes through :func:`html.escape` (quotes
included) before it is put in the page: a task named ``<img src=x onerror=alert(1)>`` shows as written. Colours are
inline styles, so they need no stylesheet: ok green, changed amber, failed and unreachable red, skipped grey.
"""

from __future__ import annotations

from html import escape
from typing import Any

from chiffon.orchestrator.console.history import Followed

# (text colour, background) of a run's state badge; the text colours keep 4.5:1 on white
COLOURS = {
    "achieved": ("#14532d", "#dcfce7"), "succeeded": ("#14532d", "#dcfce7"), "partial": ("#78350f", "#fef3c7"),
    "failed": ("#7f1d1d", "#fee2e2"), "cancelled": ("#7f1d1d", "#fee2e2"),
    "running": ("#1e3a8a", "#dbeafe"), "queued": ("#374151", "#f3f4f6"),
    "waiting": ("#78350f", "#fef3c7"), "expired": ("#374151", "#f3f4f6"), "rejected": ("#374151", "#f3f4f6"),
}
_LOG_FAILED = "#b91c1c"
# a task result's colour in the log: ok green, changed amber, failed and unreachable red, skipped grey
LOG_COLOURS = {"ok": "#15803d", "changed": "#b45309", "ignored": "#b45309", "failed": _LOG_FAILED,
               "unreachable": _LOG_FAILED, "skipped": "#6b7280"}


def badge(state: str) -> str:
    """``state`` as a coloured pill (``<span class="run-state" data-state=...>``)."""
    fg, bg = COLOURS.get(state, ("#374151", "#f3f4f6"))
    return (f'<span class="run-state" data-state="{escape(state)}" style="color:{fg};background:{bg or "#f3f4f6"};'
            f'padding:2px 10px;border-radius:10px;font-weight:600">{escape(state)}</span>')


def _items(title: str, lines: list[str], colour: str = "") -> str:
    if not lines:
        return ""
    style = f' style="color:{colour}"' if colour else ""
    return f"<p><b>{escape(title)}</b></p><ul{style}>" + "".join(f"<li>{line}</li>" for line in lines) + "</ul>"


def _outcome(f: Followed) -> str:
    run = f.run or {}
    reasons = [escape(str(r)) for r in run.get("outcome_reasons") or []]
    if f.state == "waiting" and f.plan.paused_reason:
        reasons = [f"waiting: {escape(f.plan.paused_reason)}"]
    head = (f'<div id="run-outcome" style="font-size:1.15em;margin-bottom:6px">Outcome: {badge(f.state)}'
            + (f" <span>{reasons[0]}</span>" if reasons else "") + "</div>")
    return head + _items("Why", reasons[1:]) + _items("Warnings", [escape(str(w)) for w in run.get("warnings") or []],
                                                      "#92400e")


def head_html(f: Followed, audit_record: str = "") -> str:
    """The top of the run page: the outcome with its reasons and warnings first, then the checks (verified or
    not), the skipped tasks, the plan and decision, Ansible's status, a failure, the audit commit (with
    ``audit_record``, HTML from :func:`records_html.audit_fields`, shown inline) and links to the plan's audit
    records."""
    plan, run = f.plan, f.run or {}
    parts = [f"<h3>{escape(plan.id)}: {escape(plan.playbook)}</h3>", _outcome(f)]
    checks = [f'<span style="color:{"#15803d" if c.get("ok") else _LOG_FAILED}">'
              f'{"verified" if c.get("ok") else "not verified"}</span>: {escape(str(c.get("name")))} '
              f'on {escape(str(c.get("host") or c.get("hosts") or "-"))} ({escape(str(c.get("evidence")))})'
              for c in run.get("checks") or []]
    parts.append(_items("Checks", checks))
    parts.append(_items("Skipped tasks", [f'{escape(str(s.get("task")))} on {escape(str(s.get("host")))} '
                                          f'({escape(str(s.get("condition")))})' for s in run.get("skipped") or []],
                        "#4b5563"))
    facts = [("Request", plan.request or "(none)"), ("Repo", plan.repo), ("Hosts", ", ".join(plan.hosts) or "(none)"),
             ("Plan", plan.status)]
    if f.decision:
        facts.append(("Decision", f"{f.decision['decision']} by {f.decision['approver']} via {f.decision['channel']}"
                      + (f": {f.decision['reason']}" if f.decision.get("reason") else "")))
    if run:
        facts.append(("Ansible", f"{run['status']} · changed {run.get('changed')}"
                      + (f" · rc {run['rc']}" if run.get("rc") is not None else "")))
        facts.append(("Run", f"{run['id']}, started {str(run.get('started_at') or '')[:19].replace('T', ' ')} UTC"
                      + (f", ended {str(run['finished_at'])[:19].replace('T', ' ')} UTC" if run.get("finished_at")
                         else "")))
    else:
        facts.append(("Run", "not started"))
    if run.get("failure"):
        facts.append(("Failure", str(run["failure"].get("message") if isinstance(run["failure"], dict)
                                     else run["failure"])))
    parts.append('<dl class="run-facts" style="display:grid;grid-template-columns:max-content 1fr;gap:2px 12px">'
                 + "".join(f"<dt><b>{escape(k)}</b></dt><dd style='margin:0'>{escape(str(v))}</dd>" for k, v in facts)
                 + "</dl>")
    links = f'<a href="?audit={escape(plan.id)}">audit records of this plan</a>'
    if run.get("audit_commit"):
        sha = escape(str(run["audit_commit"]))
        parts.append(f'<details id="run-audit"><summary>Audit commit <code>{sha}</code></summary>{audit_record}'
                     "</details>")
    parts.append(f"<p>{links}</p>")
    return "\n".join(p for p in parts if p)


def log_line(event: dict[str, Any]) -> str:
    """One task event as a coloured log line: ``HH:MM:SS status host task  message``, escaped."""
    status = "changed" if event.get("changed") and event.get("status") == "ok" else str(event.get("status") or "")
    fg = LOG_COLOURS.get(status, "#111827")
    when = str(event.get("created_at") or "")[11:19]
    text = f"{when} {status:<11} {str(event.get('host') or '-'):<12} {event.get('task') or ''}"
    message = f"  {event['message']}" if event.get("message") else ""
    return (f'<span class="log-{escape(status)}" style="color:{fg}">{escape(text)}</span>'
            f'<span style="color:#4b5563">{escape(message)}</span>')


def log_html(f: Followed) -> str:
    """The run's task log as a monospaced, coloured ``<pre>``; says why it is empty when it is."""
    if not f.events:
        why = "the run has not started" if f.run is None else (
            "waiting for the first task result" if f.run["status"] == "running" else "no task events were stored")
        return f'<pre class="run-log" style="color:#6b7280">({escape(why)})</pre>'
    lines = "\n".join(log_line(e) for e in f.events)
    live = ' data-live="1"' if not f.done else ""
    return (f'<pre class="run-log"{live} style="font-family:ui-monospace,SFMono-Regular,Menlo,monospace;'
            f'font-size:13px;background:#f9fafb;padding:8px;max-height:480px;overflow:auto;white-space:pre-wrap">'
            f"{lines}</pre>")
