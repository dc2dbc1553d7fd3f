"""Run a playbook with ansible-runner; its events become chiffon records (:mod:`.events`).

ansible-runner is blocking; :func:`run_playbook` runs it in a worker thread and
hands each event to an async callback on the caller's loop, in order. Extra
vars are written as a YAML file whose strings are tagged ``!unsafe`` (:mod:`.unsafe_yaml`), so Ansible
never templates what a user or a model typed (``{{ lookup('pipe', 'id') }}``
reaches the playbook as that literal text).

Secrets are masked by value before anything is kept: a :class:`~chiffon.shared.redact.Redactor` holding the
run's secret extra vars, typed passwords, the vault password and every value it decrypts
(:mod:`servers.ansible.vault_values`) rewrites each ansible-runner event before ansible-runner writes it to the
run folder and before it becomes a chiffon record (diff, task event, failure). Ansible gets an allow-listed
environment (:func:`ansible_env`), and the run folder keeps no environment: no ``env/envvars``, no stdout
file, and the artifacts' ``command`` file is rewritten without its ``env``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from chiffon.servers.ansible import vault_values
from chiffon.servers.ansible.ansible_cfg import host_key_checking
from chiffon.servers.ansible.events import EventCallback, EventCollector, Outcome
from chiffon.servers.ansible.prompted import Typed
from chiffon.servers.ansible.unsafe_yaml import unsafe_extra_vars_yaml
from chiffon.shared.errors import AnsibleError
from chiffon.shared.redact import Redactor, is_secret_key, remember
from chiffon.shared.runtime import playbook_umask, tighten

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.5  # how often ansible-runner checks for a cancel (its pexpect timeout; its default is 5 s)
CANCEL_WAIT_S = 3.0  # how long a cancelled run waits for ansible-runner to kill Ansible and return
# filelock (loaded with the audit log or the embedder) refuses an os.forkpty in one thread while another thread is
# forking (its at-fork hooks, filelock 3.2x); ansible-runner's pexpect start then fails before Ansible runs, and
# two checks or runs at once (drift, the infra worker's parallel runs) are started again, at most this many times
FORK_RACE = "unsafe while filelock"
FORK_TRIES = 3
# What Ansible inherits from chiffon's environment besides ansible.pass_env: locale, user, terminal, temp folder,
# the SSH agent, and the ANSIBLE_* settings the user made (kept: they configure Ansible, as in a shell, and may
# point it at plugins, which the user chose). Everything else (CHIFFON_*, API keys, cloud credentials) stays out.
PASSED_ENV = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR",
                        "SSH_AUTH_SOCK"})
PASSED_ENV_PREFIX = re.compile(r"^(LC_|ANSIBLE_)")
class Keep(Protocol):
    """What a real run hands each raw event to before masking (:class:`servers.ansible.undo.Keeper`)."""

    playbook: Path | None  # a read-only playbook of its own, run first in the same ansible-playbook call

    def __call__(self, event: dict[str, Any]) -> bool:
        """Take one raw event (never raises); True when it belongs to its own playbook, never to the run's."""
        ...


def run_redactor(repo: Path, extra_vars: Mapping[str, Any] | None, secret_values: Any = (),
                 vault_password_file: Path | None = None, typed: Typed | None = None) -> Redactor:
    """The values one check or run must never show, as a :class:`Redactor` (also remembered process-wide by
    :func:`chiffon.shared.redact.remember`, so the audit, the error bus and the streams mask them too).

    Args:
        repo: the tree Ansible reads (the plan's snapshot): its vault files and inline ``!vault`` values are
            decrypted with the run's vault password and every string in them is a secret.
        extra_vars: the run's extra vars; those whose names say secret (``db_password``) are secrets.
        secret_values: more secret values (strings, or dicts/lists of them): the extra vars named secret.
        vault_password_file, typed: the vault password (a file, or typed) and the typed become password.

    Blocking (reads and decrypts files): call it in a thread.
    """
    values: list[Any] = [v for k, v in (extra_vars or {}).items() if is_secret_key(str(k))]
    values.append(secret_values)
    if typed is not None:
        values += [typed.vault or "", typed.become or ""]
    password = vault_values.password_bytes(vault_password_file, typed.vault if typed else None)
    if password:
        values += [password.decode(errors="replace"), *vault_values.decrypted_values(repo, password)]
    remember(values)
    return Redactor(values)


def ansible_env(inherited: Mapping[str, str], ours: Mapping[str, str], pass_env: Iterable[str]) -> dict[str, str]:
    """The environment ansible-playbook runs with: ``inherited`` (ansible-runner's, built from ``os.environ``)
    cut to :data:`PASSED_ENV`, ``LC_*``, ``ANSIBLE_*`` and ``pass_env``, plus ``ours`` (what chiffon sets) and what
    ansible-runner itself set (its callback plugin, ``PYTHONPATH``: a name or value that is not ``os.environ``'s)."""
    passed = set(pass_env) | PASSED_ENV

    def kept(key: str, value: str) -> bool:
        if key in ours or key in passed or PASSED_ENV_PREFIX.match(key):
            return True
        return os.environ.get(key) != value  # set by ansible-runner, not inherited

    return {k: v for k, v in inherited.items() if kept(k, v)}


def _scrub_command_file(private_dir: Path) -> None:
    """Rewrite each ``artifacts/*/command`` (ansible-runner writes ``{command, cwd, env}``) without ``env``."""
    for path in private_dir.glob("artifacts/*/command"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        data.pop("env", None)
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)


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
    secret_values: Any = (),
    pass_env: Iterable[str] = (),
    verify: tuple[Path, str] | None = None,
    keep: Keep | None = None,
) -> Outcome:
    """Run ``playbook`` (relative to ``repo``) against ``inventory``.

    Args:
        check: run with ``--check --diff`` (changes nothing) instead of for real.
        limit: ``--limit`` pattern, already validated.
        tags, skip_tags: ``--tags`` / ``--skip-tags``, already validated against the playbook's tags.
        vault_password_file: ``--vault-password-file`` for repos with ansible-vault encrypted vars; it also
            replaces ``ansible.cfg``'s ``vault_password_file`` (``ANSIBLE_VAULT_PASSWORD_FILE``), which is never
            read: None means no password file at all (a random one that decrypts nothing stands in).
        roles_path: folders to find roles in (``ANSIBLE_ROLES_PATH``), for a playbook that lives outside the
            repo (a generated one); ``playbook`` is then an absolute path.
        typed: passwords a human typed at a terminal (:mod:`servers.ansible.prompted`): Ansible is asked to
            prompt (``--ask-vault-pass``) and ansible-runner answers from memory; nothing is written to disk.
        project: the Ansible project's folder, relative to ``repo`` (``ansible`` for ``ansible/ansible.cfg``):
            ansible-playbook runs there, so its ``ansible.cfg`` applies, as ``cd ansible && ansible-playbook``.
        extra_vars: passed with ``-e @file``, every string ``!unsafe``.
        private_dir: ansible-runner's private data dir; artifacts stay there for post-mortems.
        on_event: awaited for each task result, in order, on the caller's loop.
        secret_values: values to mask besides those :func:`run_redactor` finds (the extra vars named secret).
        pass_env: names of environment variables Ansible also gets (``ansible.pass_env``); see :func:`ansible_env`.
        verify: ``(playbook, play name)``: a read-only playbook run after ``playbook`` in the same
            ansible-playbook call (:func:`servers.ansible.checks.verify_playbook`); the events of plays with that
            name go to ``Outcome.probes``, never to the run's events, changes or failures.
        keep: called in ansible-runner's thread with each raw event *before* it is masked (the before-states an
            undo puts back must hold secrets exactly: :class:`servers.ansible.undo.Keeper`); its ``playbook``
            (read-only stats) runs before ``playbook`` in the same call, and its events (``keep`` answers True)
            never reach the run's events, changes or failures.

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
    redactor = await asyncio.to_thread(run_redactor, repo, extra_vars, secret_values, vault_password_file, typed)
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
    # the vault password file is the one chiffon passes (the snapshot's copy, or a verified private copy), never
    # what ansible.cfg names: with none passed, a password that decrypts nothing stands in, so no script runs
    envvars["ANSIBLE_VAULT_PASSWORD_FILE"] = str(vault_password_file or _no_vault_password(private_dir))

    project_dir = repo / project if project else repo
    envvars["ANSIBLE_HOST_KEY_CHECKING"] = host_key_checking(project_dir)
    run_path = playbook if os.path.isabs(playbook) or not project else os.path.relpath(repo / playbook, project_dir)

    # ansible-runner reads its settings from env/settings only: given in memory beside suppress_env_files, it
    # drops them (ansible-runner 2.4.3, config/_base.py prepare_env). They hold no secret, so they are written.
    (private_dir / "env").mkdir(mode=0o700, exist_ok=True)
    (private_dir / "env" / "settings").write_text(json.dumps({"pexpect_timeout": CANCEL_POLL_S}))

    def handler(event: dict[str, Any]) -> bool:
        # ansible-runner writes the event to artifacts/*/job_events once this returns: masked here, it never
        # holds a known secret on disk
        own = keep(event) if keep is not None else False  # undo's own read-only stat: kept, never the run's
        if redactor:
            clean = redactor.value(event)
            event.clear()
            event.update(clean)
        if not own:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        return True

    def blocking_run() -> Any:
        try:
            # 0.1 s of imports: loaded by the first check or run, not at start-up; init_runner is what
            # ansible_runner.run calls before Runner.run, split here to set the environment in between
            from ansible_runner.interface import init_runner

            for attempt in range(1, FORK_TRIES + 1):
                runner = init_runner(
                    private_data_dir=str(private_dir), project_dir=str(project_dir), playbook=run_path,
                    inventory=str(inventory), limit=limit, cmdline=" ".join(_quote(c) for c in cmdline),
                    envvars=envvars, event_handler=handler, quiet=True, timeout=timeout_s,
                    cancel_callback=cancelled.is_set,
                    passwords=typed.answers() if typed else None,
                    suppress_env_files=True,  # env/envvars, env/passwords, env/cmdline stay in memory
                    suppress_output_file=True,  # no artifacts/*/stdout: the (masked) job events are the record
                )
                # ansible-runner starts from all of os.environ: Ansible gets the allow-listed part only
                runner.config.env = ansible_env(runner.config.env, envvars, pass_env)
                if keep is not None and keep.playbook is not None:  # before the playbook (ansible-runner's last argument)
                    runner.config.command.insert(len(runner.config.command) - 1, str(keep.playbook))
                # chiffon's own files are created under umask 077 (runtime.make_private); the playbook's are not
                runner.config.command = ["/bin/sh", "-c", 'umask "$0" && exec "$@"', f"{playbook_umask():04o}",
                                         *runner.config.command, *([str(verify[0])] if verify else [])]
                try:
                    runner.run()
                    return runner
                except RuntimeError as exc:  # two runs forking at once: Ansible never started; start again
                    if FORK_RACE not in str(exc) or attempt == FORK_TRIES:
                        raise
                    log.info("ansible-runner did not start (%s); starting again", exc)
                    time.sleep(0.2 * attempt)
            raise AssertionError("unreachable: the last try returns or raises")
        finally:
            vars_file.unlink(missing_ok=True)
            _scrub_command_file(private_dir)
            # a vault password copied into the run folder (preview.vault_for_run) lives as long as the run
            if vault_password_file is not None and vault_password_file.is_relative_to(private_dir):
                vault_password_file.unlink(missing_ok=True)
            tighten(private_dir)  # Ansible made its fact cache under the playbook's umask
            if cancelled.is_set():  # ansible-runner kills on its next poll; whatever it left is killed here
                _kill_left(private_dir)
            loop.call_soon_threadsafe(queue.put_nowait, None)

    collector = EventCollector(redactor, verify)
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
        outcome.failures.append({"task": None, "host": None, "module": None, "message": collector.tail.strip(),
                                 "rc": result.rc})
    return outcome


def _kill_left(private_dir: Path) -> list[int]:
    """SIGKILL the process group of every ansible-playbook still running for ``private_dir`` (its
    ``ANSIBLE_LOCAL_TEMP`` is that folder's ``tmp``), the pids killed: a cancelled run leaves nothing changing
    the hosts, even when ansible-runner returned before it could kill what it started."""
    import signal

    import psutil

    mine, killed = str(private_dir / "tmp"), []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if "ansible-playbook" in " ".join(proc.info["cmdline"] or []) and \
                    proc.environ().get("ANSIBLE_LOCAL_TEMP") == mine:
                os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
                killed.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    if killed:
        log.warning("killed ansible-playbook %s, left running after the run was cancelled", killed)
    return killed


def _no_vault_password(private_dir: Path) -> Path:
    """A 0600 file in ``private_dir`` holding a random password that decrypts nothing: it displaces the
    ``vault_password_file`` of ``ansible.cfg`` (a repo script) when the run needs no vault password."""
    import secrets

    path = private_dir / "no-vault-password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    return path


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
