"""Risk of a plan, from the playbook as written and what its check-mode run predicts.

Levels: ``low`` (nothing would change), ``medium`` (changes, or steps check mode
cannot preview), ``high`` (something would be deleted or pruned, or the check
itself failed). Each reason is a sentence a reviewer can verify in the diff.
"""

from __future__ import annotations

import re

from chiffon.servers.ansible.catalog import Playbook
from chiffon.servers.ansible.events import Outcome

_DESTRUCTIVE_CMD = re.compile(r"\b(rm\s+-|prune|drop\s+(database|table)|truncate|mkfs|dd\s+if=|wipefs|userdel)\b", re.I)
COMMAND_MODULES = {"command", "shell", "raw", "script", "ansible.builtin.command", "ansible.builtin.shell",
                    "ansible.builtin.raw", "ansible.builtin.script"}
LEVELS = ("low", "medium", "high")


def assess(playbook: Playbook, check: Outcome) -> tuple[str, list[str]]:
    """``(level, reasons)`` for running ``playbook`` after the check run ``check``."""
    level, reasons = 0, []

    def add(lvl: int, reason: str) -> None:
        nonlocal level
        level = max(level, lvl)
        reasons.append(reason)

    if check.status == "not_run":
        add(1, "check mode has not run (the plan is blocked): nothing yet predicts what would change")
    elif check.status != "successful":
        add(2, f"the check-mode run {check.status}: the real run is likely to fail part-way")
    if check.changed:
        add(1, f"{check.changed} task result(s) would change {', '.join(check.hosts) or 'the hosts'}")
    changed_tasks = {e.task for e in check.events if e.changed}
    for task in playbook.tasks:
        state = str(task.args.get("state", ""))
        raw = str(task.args.get("_raw", task.args.get("cmd", "")))
        if state == "absent":
            if task.name in changed_tasks:
                add(2, f"{task.name!r} would delete files or resources (state: absent)")
            else:
                add(1, f"{task.name!r} can delete (state: absent); check mode predicts nothing to delete now")
        if task.module in COMMAND_MODULES and _DESTRUCTIVE_CMD.search(raw):
            add(2, f"{task.name!r} runs a destructive command: {raw.strip()[:80]}")
    unpreviewed = [e.task for e in check.events if e.status == "skipped" and "check mode" in e.message.lower()]
    if unpreviewed:
        add(1, "check mode cannot preview: " + ", ".join(dict.fromkeys(unpreviewed)))
    if not reasons:
        reasons.append("check mode predicts no changes")
    return LEVELS[level], reasons
