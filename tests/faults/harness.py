"""Kill one part of chiffon in the middle of a run, then check that plan, run and audit agree and that nothing
ran twice. Shared by ``tests/faults`` and ``benchmarks/faults.py``.

Each lab is its own CHIFFON_HOME (its own embedded PostgreSQL and Redis, so the test session's are never
killed) with a playbook that pauses 5 s and then appends a line to ``<targets>/ai/runs.txt``: a second
application would add a second line.

Cases (the part killed with SIGKILL about 1 s into Ansible):

* ``postgres``: the embedded PostgreSQL under ``chiffon execute``;
* ``redis``: the embedded Redis under ``chiffon execute``;
* ``cli``: the ``chiffon execute`` process itself, which runs the plan in-process;
* ``worker``: a ``chiffon worker`` running the plan for a client (``chiffon execute`` with
  ``worker_in_process`` off), with a second worker started 5 s later (as systemd's ``Restart=on-failure``
  would);
* ``ctrl-c``: not a kill but SIGINT to ``chiffon execute``, as a terminal's Ctrl-C sends it (ansible-playbook
  runs in its own session under ansible-runner's pty, so only chiffon gets it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.config import Settings, load_settings
from chiffon.shared.runtime import open_runtime
from tests.conftest import git_commit_all, make_repo

CHIFFON = str(Path(sys.executable).parent / "chiffon")
CASES = ("postgres", "redis", "cli", "worker", "ctrl-c")
RESTART_AFTER_S = 5.0  # systemd's RestartSec in the units of `chiffon deploy systemd`
SLOW = """- name: Slow echo
  hosts: ai
  gather_facts: false
  tasks:
    - name: Take a while
      ansible.builtin.pause:
        seconds: 5
    - name: Count this run
      ansible.builtin.lineinfile:
        path: "{{ homelab_root }}/runs.txt"
        line: "ran {{ lookup('pipe', 'date +%s%N') }}"
        create: true
        mode: "0644"
"""


@dataclass
class Lab:
    """One isolated home, its repo and the environment `chiffon` runs with there."""

    settings: Settings
    env: dict[str, str]
    repo: Path
    targets: Path

    def applied(self) -> int:
        """How many times the playbook's last task ran (lines in runs.txt)."""
        written = self.targets / "ai" / "runs.txt"
        return len(written.read_text().splitlines()) if written.exists() else 0


def make_lab(root: Path) -> Lab:
    targets = root / "targets"
    targets.mkdir(parents=True)
    repo = make_repo(root / "iac")
    (repo / "slow-echo.yml").write_text(SLOW)
    git_commit_all(repo)
    settings = load_settings(None, home=root / "home")
    env = {**os.environ, "CHIFFON_HOME": str(settings.home), "HOMELAB_ROOT": str(targets), "CHIFFON_REPO": str(repo),
           "CHIFFON_EMBEDDED__IDLE_STOP_S": "0", "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    return Lab(settings, env, repo, targets)


async def approved_plan(lab: Lab) -> str:
    """A checked and approved plan of slow-echo.yml; its id."""
    async with open_runtime(lab.settings) as rt:
        svc = AnsibleService.for_runtime(rt, lab.repo)
        plan = await plans.create_plan(rt, await svc.catalog(), "slow-echo.yml")
        await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    return plan.id


def part_pid(lab: Lab, part: str) -> int:
    """The pid of the embedded PostgreSQL (``postgres``) or Redis (``redis``) of the lab."""
    home = lab.settings.home
    if part == "postgres":
        return int((home / "postgres" / "postmaster.pid").read_text().splitlines()[0])
    return int((home / "redis" / "redis.pid").read_text().strip())


def _wait_for_run(lab: Lab, procs: list[subprocess.Popen[str]], timeout_s: float = 120) -> dict[str, Any]:
    """The run's owner.json once the run has started; fails when a process ends first."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = list((lab.settings.home / "runs").glob("run-*/owner.json"))
        if found:
            return dict(json.loads(found[0].read_text()))
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"{proc.args} ended before the run started:\n{proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("the run never started")
        time.sleep(0.05)


def _start_worker(lab: Lab) -> subprocess.Popen[str]:
    proc = subprocess.Popen([CHIFFON, "worker", "--roles", "infra"], env=lab.env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    watchdog = threading.Timer(120, proc.kill)
    watchdog.start()
    try:
        for line in proc.stderr:
            if ": running approved plans" in line:
                return proc
    finally:
        watchdog.cancel()
    raise AssertionError(f"the worker did not start (exit {proc.wait()})")


def _stop(proc: subprocess.Popen[str] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class Fault:
    """What the client saw: its exit code, its stderr then its stdout, and seconds from the kill to its first
    error line on stderr, else to its exit (None when the client was what got killed)."""

    exit_code: int | None
    stderr: str
    detect_s: float | None
    exit_s: float | None = None  # from the kill (or SIGINT) to the client's exit


def _like_a_terminal_job() -> None:
    """In the client, before it starts: SIGINT handled by default, as for a command typed at a terminal. A test
    session started as a background job (`cmd &` in a script) ignores SIGINT, and its children would inherit that:
    chiffon then rightly keeps running on Ctrl-C, as a background job should."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def inject(case: str, lab: Lab, plan_id: str) -> Fault:
    """Run ``plan_id`` through ``chiffon execute``, SIGKILL the part of ``case`` 1 s into Ansible, and return
    what the client saw (it is waited for, at most 120 s after the kill)."""
    env = lab.env if case != "worker" else {**lab.env, "CHIFFON_WORKER_IN_PROCESS": "false"}
    workers = [_start_worker(lab)] if case == "worker" else []
    client = subprocess.Popen([CHIFFON, "execute", plan_id, "--json"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=_like_a_terminal_job)
    try:
        owner = _wait_for_run(lab, [client, *workers])
        time.sleep(1.0)  # Ansible is in its pause
        victim = {"postgres": lambda: part_pid(lab, "postgres"), "redis": lambda: part_pid(lab, "redis"),
                  "cli": lambda: client.pid, "worker": lambda: int(owner["pid"]),
                  "ctrl-c": lambda: client.pid}[case]()
        os.kill(victim, signal.SIGINT if case == "ctrl-c" else signal.SIGKILL)
        killed = time.monotonic()
        if case == "cli":
            client.wait(30)
            return Fault(client.returncode, "", None, time.monotonic() - killed)
        if case == "worker":
            time.sleep(RESTART_AFTER_S)
            workers.append(_start_worker(lab))
        assert client.stderr is not None
        detect_s = None
        lines = []
        watchdog = threading.Timer(120, client.send_signal, [signal.SIGABRT])  # faulthandler: its stacks
        watchdog.start()
        try:
            for line in client.stderr:
                lines.append(line)
                if detect_s is None and ("error" in line.lower() or "failed" in line.lower()):
                    detect_s = time.monotonic() - killed
            client.wait(30)
            exit_s = time.monotonic() - killed
            if detect_s is None:  # told on stdout only (--json): its answer came when it exited
                detect_s = time.monotonic() - killed
            assert client.stdout is not None
            lines.append(client.stdout.read())
        finally:
            watchdog.cancel()
        if client.returncode == -signal.SIGABRT:
            raise AssertionError("the client did not exit within 120 s:\n" + "".join(lines)[-6000:])
        return Fault(client.returncode, "".join(lines), detect_s, exit_s)
    finally:
        if client.poll() is None:
            client.kill()
        for worker in workers:
            _stop(worker)


def ansible_left(lab: Lab) -> list[str]:
    """Command lines of ansible-playbook processes still running on the lab's runs (there should be none)."""
    import psutil

    runs = str(lab.settings.home / "runs")
    left = []
    for proc in psutil.process_iter(["cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if "ansible-playbook" in line and runs in line:
            left.append(line)
    return left


async def converged(lab: Lab, plan_id: str) -> dict[str, Any]:
    """After ``chiffon status PLAN`` (which reconciles): whether plan, run and audit agree and nothing ran
    twice, with the figures. ``reconcile_s`` is that command's duration."""
    started = time.monotonic()
    status = subprocess.run([CHIFFON, "status", plan_id], env=lab.env, capture_output=True, text=True, timeout=300)
    reconcile_s = time.monotonic() - started
    async with open_runtime(lab.settings) as rt:
        after = await plans.get_plan(rt, plan_id)
        _, run = await plans.decision_and_run(rt, plan_id)
        records = rt.audit.query(plan_id=plan_id, kind="run")
    agree = bool(status.returncode == 0 and run is not None and run["status"] == after.status
                 and after.status in ("succeeded", "failed") and len(records) == 1
                 and records[0].body["status"] == after.status and run["audit_commit"] == records[0].commit)
    return {"status": after.status, "applied": lab.applied(), "agree": agree, "reconcile_s": round(reconcile_s, 3),
            "status_output": status.stdout + status.stderr, "audit": [r.body for r in records],
            "converged": agree and lab.applied() <= 1}
