"""Audit records and incidents as the console shows them, with no web code: an audit commit read back as fields
(not its YAML), and the incidents of the error bus (:mod:`chiffon.orchestrator.incidents`) as rows and as one
incident with its events. Every string from a record or an event is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import UTC
from html import escape
from typing import Any

import yaml

from chiffon.shared.runtime import Runtime

log = logging.getLogger(__name__)

# (label, the body keys that fill it, first present wins)
AUDIT_FIELDS = [("kind", ("kind",)), ("plan", ("plan_id",)), ("run", ("run_id",)), ("service", ("service",)),
                ("status", ("outcome", "status", "decision")), ("approver", ("approver",)),
                ("channel", ("channel",)), ("playbook", ("playbook",)), ("hosts", ("hosts",))]
INCIDENT_HEADERS = ["incident", "status", "severity", "title", "keys", "events", "opened (UTC)", "updated (UTC)"]
_PLAN_KEY = re.compile(r"plan:(plan-[0-9a-f]{10})")


def _read_commit(path: Any, sha: str) -> dict[str, Any] | None:
    import git

    from chiffon.shared.audit import MARKER

    try:
        commit = git.Repo(path).commit(sha)
    except (ValueError, git.GitError, OSError):
        return None
    message = commit.message if isinstance(commit.message, str) else commit.message.decode()
    subject, _, rest = message.partition("\n\n")
    body: dict[str, Any] = {}
    if rest.startswith(MARKER):
        loaded = yaml.safe_load(rest[len(MARKER):])
        body = loaded if isinstance(loaded, dict) else {}
    return {"commit": commit.hexsha, "time": commit.committed_datetime, "subject": subject, "body": body,
            "files": sorted(str(p) for p in commit.stats.files)}


async def audit_record(rt: Runtime, sha: str) -> dict[str, Any] | None:
    """The audit commit ``sha`` (40 hex digits) as ``{commit, time (aware datetime), subject, body (the structured
    record), files (paths the commit changed in the audit repo)}``; None for anything that is not one."""
    sha = (sha or "").strip().lower()
    if not re.fullmatch(r"[0-9a-f]{40}", sha) or not await asyncio.to_thread(rt.audit.exists, sha):
        return None
    return await asyncio.to_thread(_read_commit, rt.audit.path, sha)


def _value(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def audit_fields(record: dict[str, Any] | None) -> str:
    """An audit record (from :func:`audit_record`) as a definition list: time, kind, plan, run, service, status,
    approver, channel, playbook, hosts, summary, commit, changed files, then every other field of the record
    (structured values as one line of JSON), all escaped."""
    if record is None:
        return "<p>Pick a record: its fields show here.</p>"
    body = dict(record["body"])
    rows = [("time", record["time"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))]
    used = {"recorded_at"}
    for label, keys in AUDIT_FIELDS:
        for key in keys:
            if body.get(key) not in (None, "", []):
                rows.append((label, _value(body[key])))
                used.update(keys)
                break
    rows += [("summary", record["subject"]), ("commit", record["commit"]),
             ("changed files", ", ".join(record["files"]) or "(none)")]
    rest = [(k, _value(v)) for k, v in body.items() if k not in used and v not in (None, "", [], {})]
    grid = 'style="display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0"'

    def dl(pairs: list[tuple[str, str]], cls: str) -> str:
        return (f'<dl class="{cls}" {grid}>' + "".join(
            f'<dt data-field="{escape(k)}"><b>{escape(k)}</b></dt><dd style="margin:0;overflow-wrap:anywhere">'
            f"{escape(v)}</dd>" for k, v in pairs) + "</dl>")

    out = dl(rows, "audit-fields")
    if rest:
        out += "<details><summary>Every other field</summary>" + dl(rest, "audit-more") + "</details>"
    return out


def _when(value: Any) -> str:
    return str(value or "")[:19].replace("T", " ")


def incident_cells(found: dict[str, Any]) -> list[str]:
    """``INCIDENT_HEADERS``' cells of one incident (from :func:`incidents.incidents`), plain text."""
    return [found["id"], found["status"], found["severity"], found["title"], ", ".join(found["keys"]),
            str(found["events"]), _when(found["opened_at"]), _when(found["updated_at"])]


def plan_of(found: dict[str, Any]) -> str | None:
    """The plan an incident is about: its ``plan:ID`` key, or None."""
    for key in found.get("keys") or []:
        m = _PLAN_KEY.fullmatch(key)
        if m:
            return m.group(1)
    return None


def incident_html(found: dict[str, Any]) -> str:
    """One incident (from :func:`incidents.incident`): its facts, a link to its plan's run when it has a
    ``plan:ID`` key, and its recent events, newest first."""
    facts = [("status", found["status"]), ("severity", found["severity"]), ("keys", ", ".join(found["keys"])),
             ("sources", ", ".join(found["sources"])), ("events", str(found["events"])),
             ("opened", _when(found["opened_at"]) + " UTC"), ("updated", _when(found["updated_at"]) + " UTC")]
    if found.get("resolved_at"):
        facts.append(("resolved", _when(found["resolved_at"]) + " UTC"))
    if found.get("escalated_at"):
        facts.append(("escalated", _when(found["escalated_at"]) + " UTC"))
    out = [f"<h3>{escape(found['id'])}: {escape(found['title'])}</h3>",
           '<dl style="display:grid;grid-template-columns:max-content 1fr;gap:2px 12px">'
           + "".join(f"<dt><b>{escape(k)}</b></dt><dd style='margin:0'>{escape(v)}</dd>" for k, v in facts) + "</dl>"]
    plan = plan_of(found)
    if plan:
        out.append(f'<p>Plan: <a class="incident-plan" href="?plan={escape(plan)}">{escape(plan)}</a> '
                   "(its run on the Runs page)</p>")
    events = found.get("recent_events") or []
    rows = "".join(
        f"<tr><td>{escape(_when(e.get('at')))}</td><td>{escape(str(e.get('severity')))}</td>"
        f"<td>{escape(str(e.get('source')))}</td><td>{escape(str(e.get('error_type')))}</td>"
        f"<td>{escape(str(e.get('count', 1)))}</td><td>{escape(str(e.get('message')))}</td></tr>" for e in events)
    out.append(f"<p><b>Events</b> ({len(events)} recent)</p>" + (
        '<table class="incident-events"><tr><th>at (UTC)</th><th>severity</th><th>source</th><th>type</th>'
        f"<th>count</th><th>message</th></tr>{rows}</table>" if events else "<p>(none left in the stream)</p>"))
    return "\n".join(out)
