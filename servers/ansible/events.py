"""What a check or a run produced, read from ansible-runner's events: task results (:class:`TaskEvent`), the
:class:`Outcome` (stats, diffs, probes, failure), and the diff of one result as a unified diff headed by the file's
destination (:func:`render_diff`).

:class:`EventCollector` turns ansible-runner's event stream into them, every text passed through the run's
:class:`~chiffon.shared.redact.Redactor` first (:mod:`servers.ansible.runner` runs Ansible and feeds it).
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chiffon.shared.redact import Redactor

STDOUT_TAIL_CHARS = 1500  # how much of Ansible's output a failure with no failed task quotes
TASK_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


@dataclass
class TaskEvent:
    """One task result on one host, in the order Ansible reported it."""

    seq: int
    event: str
    status: str
    host: str
    task: str
    module: str
    changed: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form of every field."""
        return self.__dict__.copy()


@dataclass
class Outcome:
    """What a check or a run produced.

    ``status`` is ansible-runner's: ``successful``, ``failed``, ``timeout`` or ``canceled``.
    ``stats`` is the play recap per host (ok, changed, failures, dark, skipped).
    ``artifact_data`` is what the playbook reported with ``set_stats``.
    """

    status: str
    rc: int | None
    events: list[TaskEvent] = field(default_factory=list)
    diffs: list[dict[str, str]] = field(default_factory=list)
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    artifact_data: dict[str, Any] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)  # the verification play's results (servers.ansible.checks)

    @property
    def changed(self) -> int:
        """Number of task results that changed (or would change, in check mode)."""
        return sum(1 for e in self.events if e.changed)

    @property
    def hosts(self) -> list[str]:
        """Hosts the play recap lists."""
        return sorted({h for per_host in self.stats.values() for h in per_host})

    @property
    def diff_text(self) -> str:
        """All diffs as one unified-diff text, each headed by task and host."""
        return "".join(f"# {d['task']} on {d['host']}\n{d['diff']}" for d in self.diffs)


def render_diff(diff: dict[str, Any], dest: str | None = None) -> str:
    """Ansible's ``{before, after, before_header, after_header}`` or ``prepared`` as a unified diff.

    ``dest``: the absolute path the task writes on the host (:func:`destination`). It heads the diff where
    Ansible's own header is missing (a file that does not exist yet, a state diff) or names something else (a
    template's local temp copy, ``dynamically generated``), so the diff always says which file it changes.
    """
    if "prepared" in diff:
        return str(diff["prepared"]).rstrip("\n") + "\n"
    before, after = diff.get("before", ""), diff.get("after", "")
    if isinstance(before, dict) or isinstance(after, dict):
        before = yaml.safe_dump(before or {}, sort_keys=True)
        after = yaml.safe_dump(after or {}, sort_keys=True)
    headers = [str(diff.get("before_header", "before")), str(diff.get("after_header", "after"))]
    if dest:
        headers = [h if h == dest or h.startswith(dest + " (") else dest for h in headers]
    lines = difflib.unified_diff(
        str(before).splitlines(keepends=True),
        str(after).splitlines(keepends=True),
        fromfile=headers[0],
        tofile=headers[1],
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def destination(res: dict[str, Any]) -> str | None:
    """The absolute path a task's result says it writes (``dest`` or ``path``, from the result or the module's
    arguments as Ansible templated them: a template's ``{{ kuma_dir }}/compose.yaml`` resolved), or None."""
    invocation = res.get("invocation") or {}
    args = invocation.get("module_args") or {}
    for value in (res.get("dest"), res.get("path"), invocation.get("dest"), args.get("dest"), args.get("path")):
        if isinstance(value, str) and value.startswith("/"):
            return value
    return None


def when_at(task_path: str) -> str:
    """The ``when`` of the task starting at ``task_path`` (``FILE:LINE``, as ansible-runner's events give it),
    joined with ``and``; "" when there is none or the file cannot be read. ansible-runner's skipped events carry
    no result, so this is how a skip's condition is known."""
    path, _, line = task_path.rpartition(":")
    if not path or not line.isdigit():
        return ""
    try:
        whens = _whens(path, os.stat(path).st_mtime_ns)
    except (OSError, yaml.YAMLError):
        return ""
    return whens.get(int(line), "")


@functools.lru_cache(maxsize=64)
def _whens(path: str, _mtime_ns: int) -> dict[int, str]:
    """``{line: when}`` of every mapping with a ``when`` key in the YAML file at ``path`` (1-based lines)."""
    found: dict[int, str] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        root = yaml.compose(fh, Loader=yaml.SafeLoader)
    todo = [root] if root is not None else []
    while todo:
        node = todo.pop()
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == "when":
                    parts = [value.value] if isinstance(value, yaml.ScalarNode) else \
                        [v.value for v in value.value if isinstance(v, yaml.ScalarNode)] \
                        if isinstance(value, yaml.SequenceNode) else []
                    found[node.start_mark.line + 1] = " and ".join(str(p) for p in parts)
                todo.append(value)
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
    return found


def _message(res: dict[str, Any], redactor: Redactor) -> str:
    if res.get("skipped") and res.get("false_condition"):
        return f"condition false: {redactor(str(res['false_condition']))}"
    if res.get("unreachable") and isinstance(res.get("results"), list):  # a loop: "All items completed" says nothing
        inner = next((r.get("msg") for r in res["results"] if isinstance(r, dict) and r.get("msg")), None)
        if inner:
            return str(redactor(str(inner)))[:2000]
    for key in ("msg", "stderr", "stdout"):
        value = res.get(key)
        if value:
            return str(redactor(str(value)))[:2000]
    return ""


class EventCollector:
    """Turns raw ansible-runner events into an :class:`Outcome` (runs on the caller's loop); every text goes
    through ``redactor`` (known values, then secret patterns)."""

    def __init__(self, redactor: Redactor, verify: tuple[Path, str] | None = None) -> None:
        self.outcome = Outcome(status="running", rc=None)
        self.redactor = redactor
        self.verify_playbook: str | None = str(verify[0]) if verify else None
        self.verify_play: str | None = verify[1] if verify else None
        self.tail = ""  # the end of Ansible's output, redacted, for a failure no task explains

    def feed(self, raw: dict[str, Any]) -> TaskEvent | None:
        name = raw.get("event", "")
        data = raw.get("event_data") or {}
        if raw.get("stdout"):
            self.tail = (self.tail + self.redactor(str(raw["stdout"])) + "\n")[-STDOUT_TAIL_CHARS:]
        if name == "playbook_on_stats":
            self.outcome.stats = {k: data.get(k) or {} for k in ("ok", "changed", "failures", "dark", "skipped")}
            self.outcome.artifact_data = self.redactor(data.get("artifact_data") or {})
            return None
        res = data.get("res") or {}
        host, task, module = data.get("host", ""), self.redactor(str(data.get("task", ""))), data.get("task_action", "")
        # a play is chiffon's checks when both its name (random per call) and its playbook file (chiffon's, in the
        # run folder) are theirs: a repo play could read the name from the run folder, but runs from the repo's file
        if self.verify_play is not None and data.get("play") == self.verify_play and \
                data.get("playbook") == self.verify_playbook:
            if name in TASK_RESULT_EVENTS:  # a check's result: never a task of the run, a change or a failure
                kept = {k: res[k] for k in ("rc", "stdout", "stderr", "msg", "files", "matched", "unreachable")
                        if k in res}
                if res.get("exception"):  # "Error executing command." hides the cause: [Errno 2] ... b'docker'
                    kept["exception"] = str(res["exception"])[-400:]
                args = (res.get("invocation") or {}).get("module_args") or {}
                if args.get("paths"):  # find: the folder and pattern as Ansible templated them
                    kept["target"] = f"{','.join(args['paths'])}/{','.join(args.get('patterns') or [])}"
                self.outcome.probes.append({"task": task, "host": host, "status": TASK_RESULT_EVENTS[name],
                                            "res": self.redactor.value(kept)})
            return None
        if name == "runner_item_on_ok" and res.get("diff") and res.get("changed"):
            self._add_diffs(task, host, res["diff"], destination(res))
        if name not in TASK_RESULT_EVENTS:
            return None
        if name == "runner_on_ok" and res.get("changed") and "results" not in res and res.get("diff"):
            self._add_diffs(task, host, res["diff"], destination(res))
        status = TASK_RESULT_EVENTS[name]
        if data.get("ignore_errors") and status == "failed":
            status = "ignored"
        message = _message(res, self.redactor)
        if status == "skipped" and not message and (when := when_at(str(data.get("task_path", "")))):
            message = f"condition false: {self.redactor(when)}"
        event = TaskEvent(
            seq=len(self.outcome.events) + 1, event=name, status=status, host=host, task=task,
            module=module, changed=bool(res.get("changed")), message=message,
        )
        self.outcome.events.append(event)
        if status in ("failed", "unreachable"):
            self.outcome.failures.append(
                {"task": task, "host": host, "module": module, "message": event.message, "rc": res.get("rc"),
                 **({"unreachable": True} if status == "unreachable" else {})}
            )
        return event

    def _add_diffs(self, task: str, host: str, diff: Any, dest: str | None) -> None:
        for d in diff if isinstance(diff, list) else [diff]:
            if isinstance(d, dict) and (text := render_diff(d, dest)):
                self.outcome.diffs.append({"task": task, "host": host, "diff": self.redactor(text)})


EventCallback = Callable[[TaskEvent], Awaitable[None]]
