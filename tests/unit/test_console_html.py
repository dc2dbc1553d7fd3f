"""What the console's Runs, Audit and Incidents pages render, as HTML: the outcome first, the log coloured by
status, a record as fields, an incident linked to its plan, and every string from a repo, Ansible or an event
escaped; the links into the console."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chiffon.orchestrator.console import links, run_html
from chiffon.orchestrator.console.history import Followed, duration_text
from chiffon.orchestrator.console.records_html import audit_fields, incident_cells, incident_html, plan_of
from chiffon.servers.ansible.plans import Plan

ATTACK = "<img src=x onerror=alert(1)>"
NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def plan(**over: Any) -> Plan:
    fields: dict[str, Any] = dict(
        id="plan-0123456789", request=f"deploy {ATTACK}", repo="/srv/homelab-infra", repo_commit=None,
        playbook=f"{ATTACK}.yml", service=None, inventory="inventory.ini", hosts=["ai"], host_limit=None,
        extra_vars={}, match=None, check_result=None, diff="", risk="low", risk_reasons=[], status="succeeded",
        audit_commit=None, created_at=NOW, updated_at=NOW)
    return Plan(**{**fields, **over})


def event(seq: int, status: str, task: str, changed: bool = False, message: str = "") -> dict[str, Any]:
    return {"seq": seq, "status": status, "host": "ai", "task": task, "module": "copy", "changed": changed,
            "message": message, "created_at": f"2026-12-07T15:00:0{seq}+00:00"}


def followed(state: str = "partial", **run: Any) -> Followed:
    base = {"id": "run-0123456789", "status": "succeeded", "outcome": state, "rc": 0, "changed": 1,
            "outcome_reasons": [f"Uptime Kuma is not running: {ATTACK}", "second reason"],
            "warnings": [f"warned {ATTACK}"], "checks": [{"name": ATTACK, "ok": False, "evidence": "refused"}],
            "skipped": [{"task": ATTACK, "host": "east", "condition": "docker_info.rc == 0"}],
            "failure": None, "audit_commit": "a" * 40, "started_at": "2026-12-07T15:00:00+00:00",
            "finished_at": "2026-12-07T15:00:09+00:00", **run}
    events = [event(1, "ok", "Gather"), event(2, "ok", ATTACK, changed=True), event(3, "failed", "Broken", message=ATTACK),
              event(4, "skipped", "Start"), event(5, "unreachable", "Reach")]
    return Followed(plan=plan(), state=state, decision={"decision": "approved", "approver": "alice (console)",
                                                        "channel": "console", "reason": ATTACK},
                    run=base, events=events, seq=5, done=True)


def test_the_outcome_and_its_reasons_come_first_then_checks_then_skipped_tasks() -> None:
    page = run_html.head_html(followed())
    outcome = page.index('id="run-outcome"')
    assert outcome < page.index("Uptime Kuma is not running") < page.index("Checks") < page.index("Skipped tasks")
    assert page.index("Skipped tasks") < page.index("Ansible")
    assert 'data-state="partial"' in page and "warned" in page and "second reason" in page
    assert "not verified" in page and 'href="?audit=plan-0123456789"' in page and "a" * 40 in page


def test_every_string_from_a_run_is_escaped_in_the_run_page() -> None:
    f = followed()
    for page in (run_html.head_html(f), run_html.log_html(f)):
        assert "<img" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_log_is_coloured_by_status() -> None:
    log = run_html.log_html(followed())
    assert log.startswith('<pre class="run-log"')
    colour = run_html.LOG_COLOURS
    assert (colour["ok"], colour["changed"], colour["skipped"]) == ("#15803d", "#b45309", "#6b7280")
    assert f'class="log-ok" style="color:{colour["ok"]}"' in log
    assert f'class="log-changed" style="color:{colour["changed"]}"' in log  # an ok that changed something: amber
    assert f'class="log-skipped" style="color:{colour["skipped"]}"' in log
    assert 'class="log-failed" style="color:#b91c1c"' in log and 'class="log-unreachable" style="color:#b91c1c"' in log


def test_a_live_run_is_marked_live_and_an_empty_log_says_why() -> None:
    f = followed("running", status="running", outcome=None, finished_at=None)
    f.done = False
    assert 'data-live="1"' in run_html.log_html(f)
    assert "waiting for the first task result" in run_html.log_html(Followed(plan=f.plan, state="running",
                                                                             decision=None, run=f.run))
    assert "has not started" in run_html.log_html(Followed(plan=f.plan, state="queued", decision=None, run=None))


def test_a_waiting_run_says_why_at_the_top() -> None:
    f = Followed(plan=plan(status="paused", paused_reason=f"ai is busy: {ATTACK}"), state="waiting", decision=None,
                 run=None)
    page = run_html.head_html(f)
    assert page.index("waiting: ai is busy") < page.index("Run")
    assert "<img" not in page


def test_durations_read_in_seconds_minutes_and_hours() -> None:
    assert [duration_text(s) for s in (4.4, 184, 3720)] == ["4 s", "3 min 04 s", "1 h 02 min"]
    assert duration_text(None, "running") == "running" and duration_text(None, "queued") == ""


def test_an_audit_record_shows_as_fields_not_yaml() -> None:
    record = {"commit": "b" * 40, "time": NOW, "subject": f"plan-0123456789 approved by {ATTACK}",
              "files": ["records/plan-0123456789/002-approval.yaml"],
              "body": {"kind": "approval", "plan_id": "plan-0123456789", "decision": "approved",
                       "approver": "alice (console)", "channel": "console", "service": "kuma",
                       "hosts": ["ai", "east"], "reason": ATTACK, "risk": "low", "recorded_at": "x"}}
    page = audit_fields(record)
    fields = [part.split("</b>")[0] for part in page.split('<dt data-field="')[1:]]
    assert [f.split('"')[0] for f in fields][:10] == ["time", "kind", "plan", "service", "status", "approver",
                                                       "channel", "hosts", "summary", "commit"]
    assert "changed files" in page and "records/plan-0123456789/002-approval.yaml" in page
    assert "ai, east" in page and "Every other field" in page and "kind: approval" not in page
    assert "<img" not in page and "&lt;img" in page


def test_an_incident_links_to_its_plan_and_escapes_its_events() -> None:
    found = {"id": "inc-0123456789", "status": "open", "severity": "error", "title": f"ansible run_failed: {ATTACK}",
             "keys": ["host:east", "plan:plan-0123456789"], "sources": ["ansible"], "events": 2,
             "opened_at": "2026-12-07T15:00:00+00:00", "updated_at": "2026-12-07T15:01:00+00:00",
             "resolved_at": None, "escalated_at": None,
             "recent_events": [{"at": "2026-12-07T15:01:00+00:00", "severity": "error", "source": "ansible",
                                "error_type": "run_failed", "message": ATTACK, "count": 1}]}
    assert plan_of(found) == "plan-0123456789"
    page = incident_html(found)
    assert 'href="?plan=plan-0123456789"' in page and "run_failed" in page
    assert "<img" not in page and page.count("&lt;img") == 2
    assert incident_cells(found)[:3] == ["inc-0123456789", "open", "error"]
    assert plan_of({**found, "keys": ["plan:x' onmouseover='y", "host:ai"]}) is None  # only well-formed ids link


def test_links_open_their_tab_and_ignore_what_is_not_an_id() -> None:
    assert links.opened({"plan": "plan-0123456789"}) == ("runs", {"plan": "plan-0123456789"})
    assert links.opened({"audit": "plan-0123456789"}) == ("audit", {"audit": "plan-0123456789"})
    assert links.opened({"incident": "inc-0123456789"}) == ("incidents", {"incident": "inc-0123456789"})
    assert links.opened({"plan": "plan-0123'); DROP"}) == (None, {})
    assert links.opened({"plan": ATTACK, "other": "x"}) == (None, {})
