"""Run a playbook with ansible-runner and turn its events into chiffon records.

ansible-runner is blocking; :func:`run_playbook` runs it in a worker thread and
hands each event to an async callback on the caller's loop, in order. Extra
vars are written as a YAML file whose strings are tagged ``!unsafe``, so Ansible
never templates what a user or a model typed (``{{ lookup('pipe', 'id') }}``
reaches the playbook as that literal text).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chiffon.servers.ansible.prompted import Typed
from chiffon.shared.errors import AnsibleError
from chiffon.shared.redact import redact, redact_text

log = logging.getLogger(__name__)

# Credentials chiffon uses and Ansible never does: blanked in ansible-runner's environment.
CANCEL_POLL_S = 0.5  # how often ansible-runner checks for a cancel (its pexpect timeout; its default is 5 s)
CANCEL_WAIT_S = 3.0  # how long a cancelled run waits for ansible-runner to kill Ansible and return
CHIFFON_ONLY_ENV = frozenset({"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "CHROMA_API_KEY", "PGPASSWORD"})
TASK_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


class _Unsafe(str):
    """A string dumped with Ansible's ``!unsafe`` tag."""


class _UnsafeDumper(yaml.SafeDumper):
    pass


_UnsafeDumper.add_representer(_Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v)))


def _mark_unsafe(value: Any) -> Any:
    if isinstance(value, str):
        return _Unsafe(value)
    if isinstance(value, dict):
        return {str(k): _mark_unsafe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mark_unsafe(v) for v in value]
    return value


def unsafe_extra_vars_yaml(extra_vars: dict[str, Any]) -> str:
    """YAML for ``-e @file`` with every string tagged ``!unsafe`` (never templated)."""
    return yaml.dump(_mark_unsafe(extra_vars), Dumper=_UnsafeDumper, sort_keys=True)


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


def render_diff(diff: dict[str, Any]) -> str:
    """Ansible's ``{before, after, before_header, after_header}`` or ``prepared`` as a unified diff."""
    if "prepared" in diff:
        return str(diff["prepared"]).rstrip("\n") + "\n"
    before, after = diff.get("before", ""), diff.get("after", "")
    if isinstance(before, dict) or isinstance(after, dict):
        before = yaml.safe_dump(before or {}, sort_keys=True)
        after = yaml.safe_dump(after or {}, sort_keys=True)
    lines = difflib.unified_diff(
        str(before).splitlines(keepends=True),
        str(after).splitlines(keepends=True),
        fromfile=str(diff.get("before_header", "before")),
        tofile=str(diff.get("after_header", "after")),
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _message(res: dict[str, Any]) -> str:
    if res.get("skipped") and res.get("false_condition"):
        return f"condition false: {res['false_condition']}"
    for key in ("msg", "stderr", "stdout"):
        value = res.get(key)
        if value:
            return redact_text(str(value))[:2000]
    return ""


class _EventCollector:
    """Turns raw ansible-runner events into an :class:`Outcome` (runs on the caller's loop)."""

    def __init__(self) -> None:
        self.outcome = Outcome(status="running", rc=None)

    def feed(self, raw: dict[str, Any]) -> TaskEvent | None:
        name = raw.get("event", "")
        data = raw.get("event_data") or {}
        if name == "playbook_on_stats":
            self.outcome.stats = {k: data.get(k) or {} for k in ("ok", "changed", "failures", "dark", "skipped")}
            self.outcome.artifact_data = redact(data.get("artifact_data") or {})
            return None
        res = data.get("res") or {}
        host, task, module = data.get("host", ""), data.get("task", ""), data.get("task_action", "")
        if name == "runner_item_on_ok" and res.get("diff") and res.get("changed"):
            self._add_diffs(task, host, res["diff"])
        if name not in TASK_RESULT_EVENTS:
            return None
        if name == "runner_on_ok" and res.get("changed") and "results" not in res and res.get("diff"):
            self._add_diffs(task, host, res["diff"])
        status = TASK_RESULT_EVENTS[name]
        if data.get("ignore_errors") and status == "failed":
            status = "ignored"
        event = TaskEvent(
            seq=len(self.outcome.events) + 1, event=name, status=status, host=host, task=task,
            module=module, changed=bool(res.get("changed")), message=_message(res),
        )
        self.outcome.events.append(event)
        if status in ("failed", "unreachable"):
            self.outcome.failures.append(
                {"task": task, "host": host, "module": module, "message": event.message, "rc": res.get("rc")}
            )
        return event

    def _add_diffs(self, task: str, host: str, diff: Any) -> None:
        for d in diff if isinstance(diff, list) else [diff]:
            if isinstance(d, dict) and (text := render_diff(d)):
                self.outcome.diffs.append({"task": task, "host": host, "diff": redact_text(text)})


EventCallback = Callable[[TaskEvent], Awaitable[None]]


async def run_playbook(
    repo: Path,
    playbook: str,
    inventory: Path,
    private_dir: Path,
    *,
    check: bool,
    limit: str | None = None,
    tags: list[str] | None = None,
    skip_tags: list[str] | None = None,
    extra_vars: dict[str, Any] | None = None,
    vault_password_file: Path | None = None,
    roles_path: list[Path] | None = None,
    project: str = "",
    typed: Typed | None = None,
    timeout_s: int = 3600,
    forks: int = 5,
    on_event: EventCallback | None = None,
) -> Outcome:
    """Run ``playbook`` (relative to ``repo``) against ``inventory``.

    Args:
        check: run with ``--check --diff`` (changes nothing) instead of for real.
        limit: ``--limit`` pattern, already validated.
        tags, skip_tags: ``--tags`` / ``--skip-tags``, already validated against the playbook's tags.
        vault_password_file: ``--vault-password-file`` for repos with ansible-vault encrypted vars.
        roles_path: folders to find roles in (``ANSIBLE_ROLES_PATH``), for a playbook that lives outside the
            repo (a generated one); ``playbook`` is then an absolute path.
        typed: passwords a human typed at a terminal (:mod:`servers.ansible.prompted`): Ansible is asked to
            prompt (``--ask-vault-pass``) and ansible-runner answers from memory; nothing is written to disk.
        project: the Ansible project's folder, relative to ``repo`` (``ansible`` for ``ansible/ansible.cfg``):
            ansible-playbook runs there, so its ``ansible.cfg`` applies, as ``cd ansible && ansible-playbook``.
        extra_vars: passed with ``-e @file``, every string ``!unsafe``.
        private_dir: ansible-runner's private data dir; artifacts stay there for post-mortems.
        on_event: awaited for each task result, in order, on the caller's loop.

    Returns:
        The :class:`Outcome`; a failed playbook is an outcome with ``status="failed"``, not an error.

    Cancelling the call (Ctrl-C) stops Ansible: ansible-runner kills ansible-playbook's process group within
    :data:`CANCEL_POLL_S`, and the call waits at most :data:`CANCEL_WAIT_S` for it before re-raising.

    Raises:
        AnsibleError: ansible-runner could not start at all.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
    private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cmdline = ["--diff", "--forks", str(forks)]
    if check:
        cmdline.insert(0, "--check")
    if tags:
        cmdline += ["--tags", ",".join(tags)]
    if skip_tags:
        cmdline += ["--skip-tags", ",".join(skip_tags)]
    if vault_password_file is not None and not (typed and typed.vault):
        cmdline += ["--vault-password-file", str(vault_password_file)]
    if typed is not None:
        cmdline += typed.flags()
    vars_file = private_dir / "extra_vars.yml"
    if extra_vars:  # 0600, and deleted once Ansible is done: it may hold secret values
        fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(unsafe_extra_vars_yaml(extra_vars))
        cmdline += ["-e", f"@{vars_file}"]
    venv_bin = str(Path(sys.executable).parent)
    envvars = {
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),  # ansible-playbook lives beside python
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCAL_TEMP": str(private_dir / "tmp"),
    }
    if roles_path:
        envvars["ANSIBLE_ROLES_PATH"] = os.pathsep.join(str(p) for p in roles_path)
    for key in os.environ:  # chiffon's own secrets (database URLs, API keys) are nothing Ansible needs
        if key.startswith("CHIFFON_") or key in CHIFFON_ONLY_ENV:
            envvars[key] = ""

    project_dir = repo / project if project else repo
    run_path = playbook if os.path.isabs(playbook) or not project else os.path.relpath(repo / playbook, project_dir)

    # ansible-runner reads its settings from env/settings only: given in memory beside suppress_env_files, it
    # drops them (ansible-runner 2.4.3, config/_base.py prepare_env). They hold no secret, so they are written.
    (private_dir / "env").mkdir(mode=0o700, exist_ok=True)
    (private_dir / "env" / "settings").write_text(json.dumps({"pexpect_timeout": CANCEL_POLL_S}))

    def handler(event: dict[str, Any]) -> bool:
        loop.call_soon_threadsafe(queue.put_nowait, event)
        return True

    def blocking_run() -> Any:
        try:
            import ansible_runner  # 0.1 s of imports: loaded by the first check or run, not at start-up

            return ansible_runner.run(
                private_data_dir=str(private_dir), project_dir=str(project_dir), playbook=run_path,
                inventory=str(inventory), limit=limit, cmdline=" ".join(_quote(c) for c in cmdline),
                envvars=envvars, event_handler=handler, quiet=True, timeout=timeout_s,
                cancel_callback=cancelled.is_set,
                passwords=typed.answers() if typed else None,
                suppress_env_files=True,  # env/envvars, env/passwords, env/cmdline stay in memory
            )
        finally:
            vars_file.unlink(missing_ok=True)
            loop.call_soon_threadsafe(queue.put_nowait, None)

    collector = _EventCollector()
    cancelled = threading.Event()
    runner_task = asyncio.ensure_future(asyncio.to_thread(blocking_run))
    try:
        while (raw := await queue.get()) is not None:
            event = collector.feed(raw)
            if event is not None and on_event is not None:
                await on_event(event)
        result = await runner_task
    except asyncio.CancelledError:
        # ansible-runner sees the flag at its next poll and SIGKILLs ansible-playbook's process group (its forks
        # with it): nothing keeps changing the hosts once this returns
        cancelled.set()
        with contextlib.suppress(Exception, asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(asyncio.shield(runner_task), CANCEL_WAIT_S)
        raise
    except Exception as exc:  # ansible-runner raises ConfigurationError, OSError...
        raise AnsibleError(f"ansible-runner could not run {playbook}: {exc}") from exc
    outcome = collector.outcome
    outcome.status, outcome.rc = result.status, result.rc
    if result.status != "successful" and not outcome.failures:
        tail = redact_text((result.stdout.read() if result.stdout else "")[-1500:])
        outcome.failures.append({"task": None, "host": None, "module": None, "message": tail.strip(), "rc": result.rc})
    return outcome


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
