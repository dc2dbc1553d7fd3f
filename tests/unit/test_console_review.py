"""The console's plan review, pure: the diff per host and file, warnings as written, the typed confirmation of a
high-risk plan, the pending table and the recap (orchestrator/console/review.py, approving.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chiffon.orchestrator.console import approving
from chiffon.orchestrator.console.review import (
    FOLD_LINES,
    as_written,
    destination,
    diff_html,
    parse_diff,
    summary,
    warning_html,
)
from chiffon.servers.ansible.events import destination as result_destination
from chiffon.servers.ansible.events import render_diff
from chiffon.servers.ansible.plans import Plan
from chiffon.shared.errors import InvalidInput

ATTACK = "<img src=x onerror=alert(1)>"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def plan(**fields: Any) -> Plan:
    base: dict[str, Any] = {
        "id": "plan-0123456789", "request": "clean up", "repo": "/srv/iac/homelab-infra", "repo_commit": None,
        "playbook": "cleanup-disk.yml", "service": None, "inventory": "inventories/local.ini", "hosts": ["ai", "east"],
        "host_limit": None, "extra_vars": {}, "match": None, "check_result": None, "diff": "", "risk": "high",
        "risk_reasons": ["'Prune' runs a destructive command: docker image prune"], "status": "pending_approval",
        "audit_commit": None, "created_at": NOW - timedelta(minutes=5), "updated_at": NOW}
    return Plan(**{**base, **fields})


def template_result(dest: str, before: str, after: str, exists: bool) -> dict[str, Any]:
    """A template task's check-mode result as ansible-runner reports it (the diff headed by the temp copy)."""
    diff: dict[str, Any] = {"before": before, "after": after,
                            "after_header": "/root/.ansible/tmp/ansible-local-1abc/tmpx/compose.yaml.j2"}
    if exists:
        diff["before_header"] = dest
    return {"changed": True, "diff": diff, "invocation": {"dest": dest, "module_args": {"dest": dest}}}


def stored(task: str, host: str, res: dict[str, Any]) -> str:
    """What plans.diff holds for one result (events.Outcome.diff_text)."""
    return f"# {task} on {host}\n" + render_diff(res["diff"], result_destination(res))


def test_a_template_diff_is_headed_by_its_destination_not_ansibles_temp_copy() -> None:
    res = template_result("/srv/kuma/compose.yaml", "", "services:\n  kuma: {}\n", exists=False)
    text = render_diff(res["diff"], result_destination(res))
    assert text.splitlines()[:2] == ["--- /srv/kuma/compose.yaml", "+++ /srv/kuma/compose.yaml"]
    assert ".ansible/tmp" not in text


def test_a_lineinfile_header_keeps_its_content_suffix() -> None:
    diff = {"before": "a\n", "after": "a\nb\n", "before_header": "/srv/l.conf (content)",
            "after_header": "/srv/l.conf (content)"}
    assert render_diff(diff, "/srv/l.conf").splitlines()[0] == "--- /srv/l.conf (content)"


def test_the_destination_comes_from_the_result_or_the_module_args() -> None:
    assert result_destination({"path": "/srv/x"}) == "/srv/x"
    assert result_destination({"invocation": {"module_args": {"dest": "/etc/y"}}}) == "/etc/y"
    assert result_destination({"invocation": {"module_args": {"dest": "relative"}}}) is None


def test_one_summary_line_per_file_per_host_with_destination_kind_and_counts() -> None:
    text = (stored("Render compose", "east", template_result("/srv/kuma/compose.yaml", "", "a\nb\nc\n", False))
            + stored("Render conf", "ai", template_result("/etc/redis.conf", "x\ny\n", "x\nz\n", True))
            + "# Remove old log on ai\n--- /var/log/old.log\n+++ /var/log/old.log\n@@ -1,2 +0,0 @@\n-a\n-b\n")
    changes = parse_diff(text, ["ai", "east"])
    got = [(c.host, c.dest, c.kind, c.added, c.removed) for c in changes]
    assert got == [("east", "/srv/kuma/compose.yaml", "created", 3, 0), ("ai", "/etc/redis.conf", "changed", 1, 1),
                   ("ai", "/var/log/old.log", "removed", 0, 2)]
    assert summary(changes) == "3 file(s) on 2 host(s): 1 created, 1 changed, 1 removed; +4 -3 lines"
    shown = diff_html(text, ["ai", "east"])
    assert shown.index(">east <") < shown.index("/srv/kuma/compose.yaml") < shown.index(">ai <")
    assert '<span class="cf-add">+b</span>' in shown and '<span class="cf-hunk">@@ -0,0 +1,3 @@</span>' in shown


def test_a_directory_made_by_the_file_module_reads_as_created() -> None:
    res = {"path": "/srv/kuma", "changed": True,
           "diff": {"before": {"path": "/srv/kuma", "state": "absent"},
                    "after": {"path": "/srv/kuma", "state": "directory"}}}
    [change] = parse_diff(stored("Create dirs", "east", res), ["east"])
    assert (change.dest, change.kind) == ("/srv/kuma", "created")


def test_an_old_plan_headed_by_the_temp_copy_names_the_template() -> None:
    text = ("# Render compose on east\n--- before\n+++ /root/.ansible/tmp/ansible-local-9/tmpq/compose.yaml.j2\n"
            "@@ -0,0 +1 @@\n+a\n")
    assert destination("before", "/root/.ansible/tmp/ansible-local-9/tmpq/compose.yaml.j2") == \
        "(rendered from compose.yaml.j2)"
    assert parse_diff(text)[0].dest == "(rendered from compose.yaml.j2)"


def test_parts_of_one_file_are_merged() -> None:
    text = ("# Add a line on ai\n--- /srv/l.conf (content)\n+++ /srv/l.conf (content)\n@@ -1 +1,2 @@\n a\n+b\n"
            "# Add a line on ai\n--- /srv/l.conf (file attributes)\n+++ /srv/l.conf (file attributes)\n"
            "@@ -1 +1 @@\n-mode: '0600'\n+mode: '0644'\n")
    [change] = parse_diff(text, ["ai"])
    assert (change.dest, change.added, change.removed, change.tasks) == ("/srv/l.conf", 2, 1, ["Add a line"])


def test_a_long_file_is_folded_and_a_short_one_open() -> None:
    long_after = "".join(f"line {i}\n" for i in range(FOLD_LINES + 20))
    text = (stored("Render monitors", "east", template_result("/srv/kuma/monitors.json", "", long_after, False))
            + stored("Render compose", "east", template_result("/srv/kuma/compose.yaml", "", "a\n", False)))
    long_file, short_file = parse_diff(text, ["east"])
    assert long_file.folded and not short_file.folded
    shown = diff_html(text, ["east"])
    monitors = shown[shown.index("/srv/kuma/monitors.json") - 200:]
    assert '<details class="cf-file"><summary>' in monitors.split("monitors.json")[0]
    assert "folded" in monitors.split("</summary>")[0]
    assert '<details class="cf-file" open><summary>' in shown.split("monitors.json")[1]


def test_a_diff_cannot_inject_markup() -> None:
    text = (f"# {ATTACK} on east\n--- /srv/a\n+++ /srv/a\n@@ -1 +1 @@\n-</div><script>alert(1)</script>\n"
            f"+{ATTACK}\n")
    shown = diff_html(text, ["east"])
    assert "<script>" not in shown and "<img" not in shown and "</div><script>" not in shown
    assert "&lt;/div&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in shown
    assert "&lt;img src=x onerror=alert(1)&gt;" in shown


def test_a_free_text_diff_is_kept_as_other() -> None:
    [change] = parse_diff("# Install packages on ai\nThe following NEW packages will be installed:\n  htop\n", ["ai"])
    assert change.kind == "other" and change.lines[1] == "  htop"


def test_a_command_warning_shows_the_task_and_the_command_as_the_shell_gets_it() -> None:
    note = ("runs even in check mode (it ran during this preview): 'Check whether a Docker engine is available': "
            """docker info --format '{{ "{{" }} .ServerVersion {{ "}}" }}'""")
    shown = warning_html(note)
    assert '<b class="cf-task">Check whether a Docker engine is available</b>' in shown
    assert "docker info --format &#x27;{{ .ServerVersion }}&#x27;" in shown
    assert as_written("docker compose -f {{ kuma_dir }}/compose.yaml up -d") == \
        "docker compose -f {{ kuma_dir }}/compose.yaml up -d"


def test_a_warning_cannot_inject_markup() -> None:
    shown = warning_html(f"runs a command that check mode cannot preview (it runs after approval): '{ATTACK}': "
                         "echo </li><script>x</script>")
    assert "<img" not in shown and "<script>" not in shown and "&lt;img src=x onerror=alert(1)&gt;" in shown
    assert "<img" not in warning_html(ATTACK)


def test_a_high_risk_plan_needs_a_host_or_its_id_typed() -> None:
    risky = plan()
    for typed in (None, "", "  ", "desktop", "plan-", "yes"):
        with pytest.raises(InvalidInput, match="confirm: this plan is high risk: type one of its hosts"):
            approving.check_confirmation(risky, typed)
    for typed in ("east", " ai ", "plan-0123456789"):
        approving.check_confirmation(risky, typed)  # no error: confirmed
    assert approving.confirmed(risky, "east") and not approving.confirmed(risky, "EAST")


def test_a_low_or_medium_plan_needs_no_confirmation() -> None:
    for risk in ("low", "medium"):
        assert not approving.needs_confirmation(plan(risk=risk))
        approving.check_confirmation(plan(risk=risk), None)


def test_the_pending_table_rows() -> None:
    rows = approving.pending_rows([plan(tags=["disk"], blocked_reason="no inventory"), plan(risk="low", hosts=[])],
                                  NOW)
    assert rows[0] == ["5 min", "homelab-infra", "cleanup-disk.yml --tags disk", "ai, east", "high · blocked",
                       "plan-0123456789"]
    assert rows[1][3] == "(none)"
    assert approving.age(NOW - timedelta(hours=3, minutes=5), NOW) == "3 h"
    assert approving.age(NOW - timedelta(seconds=9), NOW) == "just now"


def test_a_request_may_only_name_a_repo_the_console_knows() -> None:
    allowed = approving.repo_choices(Path("/srv/iac"), ["/srv/other", "/srv/iac", "/srv/other"])
    assert allowed == ["/srv/iac", "/srv/other"]
    assert approving.check_repo("/srv/other", allowed) == Path("/srv/other")
    with pytest.raises(InvalidInput, match="repo: pick one of the known repos"):
        approving.check_repo("/etc", allowed)
    with pytest.raises(InvalidInput, match="--repo PATH"):
        approving.check_repo("/srv/iac", [])


def test_the_recap_names_what_was_approved_and_links_the_run() -> None:
    shown = approving.recap_html(plan(playbook=f"{ATTACK}.yml", tags=["disk"]), "alice")
    assert 'href="?plan=plan-0123456789"' in shown and "ai, east" in shown and "disk" in shown
    assert "<img" not in shown and "alice (console)" in shown


def test_the_review_escapes_every_field_of_the_plan() -> None:
    shown = approving.plan_html(plan(request=ATTACK, warnings=[ATTACK], risk_reasons=[ATTACK],
                                     blocked_reason=ATTACK, extra_vars={"m": ATTACK}))
    assert "<img" not in shown and shown.count("&lt;img src=x onerror=alert(1)&gt;") >= 4
    assert 'class="cf-risk cf-risk-high"' in shown
