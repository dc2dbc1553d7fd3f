"""PostgreSQL SIGKILLed in the middle of `chiffon execute`: the user is told at once and the CLI exits 2;
Ansible finishes what it started; when the store is back, plan, run and audit agree and nothing ran twice.

Runs on its own CHIFFON_HOME (its own embedded PostgreSQL and Redis): the session's store is never killed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from chiffon.servers.ansible import plans
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.config import Settings, load_settings
from chiffon.shared.runtime import open_runtime, stop_embedded
from tests.conftest import git_commit_all, make_repo

CHIFFON = str(Path(sys.executable).parent / "chiffon")
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


@pytest_asyncio.fixture(loop_scope="session")
async def isolated(tmp_path: Path) -> AsyncIterator[tuple[Settings, dict[str, str], Path]]:
    targets = tmp_path / "targets"
    targets.mkdir()
    repo = make_repo(tmp_path / "iac")
    (repo / "slow-echo.yml").write_text(SLOW)
    git_commit_all(repo)
    settings = load_settings(None, home=tmp_path / "home")
    env = {**os.environ, "CHIFFON_HOME": str(settings.home), "HOMELAB_ROOT": str(targets), "CHIFFON_REPO": str(repo),
           "CHIFFON_EMBEDDED__IDLE_STOP_S": "0", "PYTHONUNBUFFERED": "1",
           "PYTHONFAULTHANDLER": "1"}
    try:
        yield settings, env, repo
    finally:
        await stop_embedded(settings)


def postmaster_pid(settings: Settings) -> int:
    return int((settings.home / "postgres" / "postmaster.pid").read_text().splitlines()[0])


def execute_and_kill_postgres(settings: Settings, env: dict[str, str], plan_id: str) -> tuple[int, str]:
    """`chiffon execute PLAN`, SIGKILL of the embedded PostgreSQL once Ansible runs; (exit code, stderr)."""
    proc = subprocess.Popen([CHIFFON, "execute", plan_id, "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((settings.home / "runs").glob("*/owner.json")):  # the run started in that process
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
        time.sleep(1.0)  # Ansible is in its sleep
        os.kill(postmaster_pid(settings), signal.SIGKILL)
        try:
            _, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack
            _, stderr = proc.communicate(timeout=30)
            raise AssertionError("the CLI did not exit:\n" + stderr[-12000:]) from None
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, stderr


async def test_killing_postgres_mid_run_is_told_at_once_and_converges(
        isolated: tuple[Settings, dict[str, str], Path]) -> None:
    settings, env, repo = isolated
    async with open_runtime(settings) as rt:
        svc = AnsibleService.for_runtime(rt, repo)
        plan = await plans.create_plan(rt, await svc.catalog(), "slow-echo.yml")
        await plans.decide(rt, plan.id, "approved", approver="tester", channel="cli")
    returncode, stderr = await asyncio.to_thread(execute_and_kill_postgres, settings, env, plan.id)
    assert returncode == 2, stderr[-3000:]
    assert "PostgreSQL stopped answering" in stderr and f"chiffon status {plan.id}" in stderr
    (run_dir,) = (settings.home / "runs").glob("run-*")
    outcome = json.loads((run_dir / "outcome.json").read_text())
    assert outcome["status"] == "succeeded"  # Ansible finished what it started

    status = subprocess.run([CHIFFON, "status", plan.id], env=env, capture_output=True, text=True, timeout=180)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "succeeded" in status.stdout
    async with open_runtime(settings) as rt:
        after = await plans.get_plan(rt, plan.id)
        decision, run = await plans.decision_and_run(rt, plan.id)
        records = rt.audit.query(plan_id=plan.id, kind="run")
    assert after.status == "succeeded" and run is not None and run["status"] == "succeeded"
    assert len(records) == 1 and records[0].body["status"] == "succeeded" and "reconciled" in records[0].body
    assert run["audit_commit"] == records[0].commit
    lines = (Path(env["HOMELAB_ROOT"]) / "ai" / "runs.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ran ")  # applied once, never again
