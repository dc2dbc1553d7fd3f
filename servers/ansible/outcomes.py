"""Whether a run did what was asked for: ``achieved``, ``partial``, ``failed`` or ``cancelled``, with the reasons.

Ansible's exit code says whether any task failed. It says nothing about the task that did not run: a
``Start Uptime Kuma`` skipped because ``docker info`` failed, a ``Dump all databases`` skipped because
``pg_isready`` did, exit 0 both. :func:`judge` reads the run's task events and its checks
(:mod:`servers.ansible.checks`) and decides, by these rules, in this order:

1. ansible-runner ``canceled`` → **cancelled**; ``timeout``, a failed or unreachable task (not under
   ``ignore_errors``) → **failed**.
2. **partial** when the run applied but what was asked for is not in place:
   * a check failed (its ``failing`` sentence comes first: "Uptime Kuma is not running: ...");
   * a task that changes hosts was skipped because an earlier result it depends on came out wrong at run
     time: its condition requires a registered result to have succeeded (``docker_info.rc == 0``, ``x is
     succeeded``, ``st.stat.exists``...). A condition on configuration (``jellyfin_enabled``) or one that
     requires something to be missing (``x.rc != 0``, ``not st.stat.exists``: "install it if absent") is the
     playbook choosing, not the host refusing, and is only listed;
   * a task that changes hosts failed under ``ignore_errors``;
   * the playbook reported a ``set_stats`` flag ``*_started``/``*_running``/``*_deployed`` false;
   * every task result was a skip (nothing was applied).
3. Otherwise **achieved**; the reason says what verified it, or that nothing could (no checks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from chiffon.servers.ansible.checks import Result
    from chiffon.servers.ansible.events import TaskEvent
    from chiffon.shared.runtime import Runtime

RunOutcome = Literal["achieved", "partial", "failed", "cancelled"]
# modules that only read or only talk to Ansible itself: skipping or ignoring one changes nothing on a host
READ_ONLY_MODULES = frozenset({
    "debug", "set_fact", "set_stats", "assert", "fail", "stat", "find", "meta", "ping", "setup",
    "gather_facts", "service_facts", "package_facts", "slurp", "include_vars", "include_tasks", "import_tasks",
    "include_role", "import_role", "pause", "wait_for", "wait_for_connection", "getent", "uri", "add_host",
    "group_by", "docker_container_info", "docker_host_info", "docker_image_info", "validate_argument_spec",
})
_PROBE = r"[A-Za-z_][A-Za-z0-9_]*"
# a condition that needs an earlier registered result to have come out well (its negation reads "if missing")
_NEEDS_SUCCESS = [
    re.compile(rf"(?<!not )\b{_PROBE}\.rc\s*(\|\s*int\s*)?==\s*0\b"),
    re.compile(rf"\b{_PROBE}\s+is\s+(succeeded|success|successful)\b"),
    re.compile(rf"\b{_PROBE}\s+is\s+not\s+(failed|failure|skipped)\b"),
    re.compile(rf"\bnot\s+{_PROBE}\.failed\b"),
    re.compile(rf"(?<!not )\b{_PROBE}\.stat\.exists\b(?!\s*==\s*false)"),
]


@dataclass
class Verdict:
    """A run's outcome: ``outcome``, ``reasons`` (sentences, the most important first), ``skipped``
    (``[{task, host, condition}]``), ``ignored`` (``[{task, host, message}]``), ``checks`` (per host)."""

    outcome: RunOutcome
    reasons: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)


def needs_success(condition: str) -> bool:
    """Whether ``condition`` (a ``when`` that came out false) required an earlier result to have succeeded."""
    return any(p.search(condition) for p in _NEEDS_SUCCESS)


def changes_hosts(module: str) -> bool:
    """Whether a task of ``module`` (short or fully qualified) may change a host."""
    return module.rsplit(".", 1)[-1] not in READ_ONLY_MODULES


def _condition(event: TaskEvent) -> str:
    return event.message.removeprefix("condition false: ") if event.message.startswith("condition false:") else ""


def _failure(f: dict[str, Any]) -> str:
    """One failure as a sentence; a host SSH lost says so first ("desktop-linux is unreachable ...")."""
    message = str(f.get("message") or "").removeprefix("Task failed: ")
    if f.get("unreachable"):
        return f"{f.get('host')} is unreachable (during {f.get('task')!r}): {message}"
    return (f"{f.get('task') or 'the run'} failed" + (f" on {f['host']}" if f.get("host") else "")
            + (f": {message}" if message else ""))


def judge(status: str, events: list[TaskEvent], failures: list[dict[str, Any]], checks: list[Result],
          artifact_data: dict[str, Any], *, timeout_s: int | None = None) -> Verdict:
    """The outcome of a run from ansible-runner's ``status`` (successful, failed, timeout, canceled), the run's
    task ``events``, its ``failures``, the ``checks`` results and what the playbook reported (``set_stats``).
    The rules are the module's docstring."""
    from chiffon.servers.ansible.preview import run_warnings

    skipped = [{"task": e.task, "host": e.host, "condition": _condition(e) or e.message or "skipped"}
               for e in events if e.status == "skipped"]
    ignored = [{"task": e.task, "host": e.host, "message": e.message} for e in events if e.status == "ignored"]
    shown = [r.as_dict() for r in checks]
    if status == "canceled":
        first = next((f.get("message") for f in failures if f.get("message")), None)
        return Verdict("cancelled", [first or "the run was cancelled; the hosts may be half-changed"], skipped,
                       ignored, shown)
    if status == "timeout":
        return Verdict("failed", [f"the run was stopped after ansible.run_timeout_s ({timeout_s} s); the hosts may "
                                  "be half-changed"], skipped, ignored, shown)
    if status != "successful" or failures:
        failed = [_failure(f) for f in failures] or ["the run failed"]
        return Verdict("failed", failed, skipped, ignored, shown)
    reasons: list[str] = []
    failing: dict[str, list[str]] = {}
    for result in checks:
        if not result.ok:
            failing.setdefault(result.check.failing, []).append(result.evidence)
    reasons += [f"{sentence}: {'; '.join(dict.fromkeys(seen))}" for sentence, seen in failing.items()]
    for event in events:
        condition = _condition(event)
        if event.status == "skipped" and condition and needs_success(condition) and changes_hosts(event.module):
            reasons.append(f"{event.task!r} was skipped on {event.host}: {condition} was false (an earlier step "
                           "on the host found what it needs missing)")
        elif event.status == "ignored" and changes_hosts(event.module):
            reasons.append(f"{event.task!r} failed on {event.host} (errors ignored): {event.message[:300]}")
    reasons += run_warnings(artifact_data)
    if events and all(e.status == "skipped" for e in events):
        reasons.append("nothing was applied: every task was skipped")
    if reasons:
        return Verdict("partial", list(dict.fromkeys(reasons)), skipped, ignored, shown)
    changed = sum(1 for e in events if e.changed)
    if checks:
        verified = "; ".join(dict.fromkeys(f"{r.check.name} ({r.evidence})" for r in checks))
        return Verdict("achieved", [f"verified: {verified}"], skipped, ignored, shown)
    return Verdict("achieved", [f"applied without errors ({changed} change(s)); nothing verified it: no checks are "
                                "stated for this playbook (chiffon.yml) or derived from it"], skipped, ignored, shown)


async def last_run(rt: Runtime, repo: str, playbook: str, tags: list[str]) -> dict[str, Any] | None:
    """The newest run with an outcome of ``playbook`` with ``tags`` in ``repo``: ``{run_id, plan_id, outcome,
    reasons, checks, finished_at}`` (ISO time), or None when it never ran."""
    row = await rt.store.pool.fetchrow(
        "SELECT r.id, r.plan_id, r.outcome, r.outcome_reasons, r.checks, r.finished_at FROM runs r "
        "JOIN plans p ON p.id = r.plan_id WHERE p.repo=$1 AND p.playbook=$2 AND p.tags=$3 "
        "AND r.outcome IS NOT NULL ORDER BY r.finished_at DESC LIMIT 1", repo, playbook, tags)
    if row is None:
        return None
    return {"run_id": row["id"], "plan_id": row["plan_id"], "outcome": row["outcome"],
            "reasons": list(row["outcome_reasons"] or []), "checks": row["checks"] or [],
            "finished_at": row["finished_at"].isoformat()}


def before_run_warnings(what: str, last: dict[str, Any] | None, now: list[Result]) -> list[str]:
    """What a plan of ``what`` (``deploy-uptime-kuma.yml``) says before approval about the hosts as they are:
    its last run's outcome when that was not ``achieved``, and each check failing now (read-only, during the
    plan's check)."""
    out = []
    if last is not None and last["outcome"] != "achieved":
        out.append(f"the last run of {what} ({last['run_id']}, {last['finished_at'][:16].replace('T', ' ')} UTC) "
                   f"was {last['outcome']}: {(last['reasons'] or ['no reason recorded'])[0]}")
    failing: dict[str, list[str]] = {}
    for result in now:
        if not result.ok:
            failing.setdefault(result.check.failing, []).append(result.evidence)
    out += [f"now, before this plan runs: {sentence}: {'; '.join(dict.fromkeys(seen))}"
            for sentence, seen in failing.items()]
    if last is not None and last["outcome"] == "achieved" and failing:
        out.append(f"{what} last ran {last['finished_at'][:10]} and was verified then; it no longer is")
    return out
