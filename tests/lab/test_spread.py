"""chiffon spread across the lab (GitHub issue 32): the orchestrator and the CLI on ``ai``, a worker and hostd on
``east`` and on ``desktop-linux``, PostgreSQL on ``ai`` and Redis on ``east`` reached by URL with passwords, the
HTTP API behind a bearer token (tests/lab/services.py says how each part is started). Each test asserts what
PostgreSQL recorded (plan, run, which worker took the run) and what landed on the lab hosts. Two of them found
bugs now fixed: a worker on another host could not reconcile a dead worker's run (runs now beat:
execution.RUN_SILENT_S), and a worker whose Redis restarted stopped taking work for good."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from chiffon.servers.ansible import execution
from tests.lab.lab import Lab
from tests.lab.services import (
    DESKTOP_REQUEST,
    KUMA_REQUEST,
    SLOW_REQUEST,
    LabServices,
    Spread,
    make_repo,
)


@pytest.fixture(scope="module")
def spread(lab: Lab, lab_services: LabServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spread]:
    """The orchestrator on ai, hostd on east and desktop-linux, a worker on east (the tests start others);
    every part stopped (its process group killed) at the end, whatever happened."""
    root = tmp_path_factory.mktemp("spread")
    made = Spread(lab, lab_services, make_repo(lab, root / "homelab-infra"), root / "logs")
    made.prepare()
    try:
        made.start_orchestrator()
        for host in ("east", "desktop-linux"):
            made.start_hostd(host)
        made.start_worker("east")
        yield made
    finally:
        made.stop_all()


@pytest.fixture
def parts(spread: Spread, trusted_lab: Lab) -> Iterator[Spread]:
    """The spread with the lab's host keys trusted, a worker on east again if a test stopped it, and only it."""
    if "worker-east" not in spread.procs or spread.procs["worker-east"].poll() is not None:
        spread.start_worker("east")
    if spread.services.redis is None:
        spread.services.start_redis()
    yield spread
    spread.stop("worker-desktop-linux")


def test_a_plan_approved_on_ai_runs_from_the_worker_on_east(parts: Spread) -> None:
    plan_id = parts.plan(KUMA_REQUEST)
    parts.approve(plan_id)
    done = parts.chiffon("ai", "execute", plan_id, "--json")
    assert done.returncode == 5, done.stderr[-4000:]  # partial: applied, but no Docker engine runs in the lab
    out = json.loads(done.stdout)
    assert out["status"] == "succeeded" and out["playbook"] == "deploy-uptime-kuma.yml" and out["hosts"] == ["east"]
    assert parts.lab["east"].path("/opt/homelab/uptime-kuma/compose.yaml").is_file()
    assert not parts.lab["ai"].path("/opt/homelab/uptime-kuma").exists()
    [task] = parts.run_tasks(plan_id)
    assert task["status"] == "succeeded" and task["worker"].startswith("east-"), task
    [run] = parts.run_rows(plan_id)
    assert run["status"] == "succeeded" and run["outcome"] == "partial"
    assert parts.owner("east", run["id"])["host"] == "east"
    # east has no folder of ai's: it laid the approved snapshot out from PostgreSQL, in its own home
    [digest] = [r["snapshot_digest"] for r in parts.query("SELECT snapshot_digest FROM plans WHERE id=$1", plan_id)]
    snapshots = parts.home("east") / "snapshots"
    assert not snapshots.is_symlink() and (snapshots / digest / "manifest.json").is_file()
    # the orchestrator on ai answers for it over HTTP, with the token (and refuses without)
    url = f"{parts.api}/api/v1/plans/{plan_id}"
    assert httpx.get(url, timeout=10).status_code == 401
    seen = httpx.get(url, headers={"Authorization": f"Bearer {parts.token}"}, timeout=10)
    assert seen.status_code == 200 and seen.json()["status"] == "succeeded", seen.text[:2000]


def test_desktop_marked_busy_pauses_a_run_for_it_and_freeing_it_resumes_the_run(parts: Spread) -> None:
    note = parts.lab["desktop-linux"].path("/opt/homelab/lab-note.txt")
    plan_id = parts.plan(DESKTOP_REQUEST)
    assert parts.plan_row(plan_id)["hosts"] == ["desktop-linux"]
    parts.approve(plan_id)
    busy = parts.chiffon("ai", "host", "busy", "desktop-linux", "--reason", "gaming")
    assert busy.returncode == 0, busy.stderr
    client = parts.follow("ai", "execute", plan_id, "--json")
    try:
        paused = parts.wait_status(plan_id, {"paused", "running", "succeeded", "failed"}, 120)
        assert paused["status"] == "paused", paused
        assert "desktop-linux is busy" in paused["paused_reason"] and "gaming" in paused["paused_reason"], paused
        hosts = json.loads(parts.chiffon("ai", "host", "list", "--json").stdout)
        assert hosts["desktop-linux"]["status"] == "busy" and hosts["east"]["status"] == "available", hosts
        time.sleep(3)  # three beats of every worker's resumer: still paused, nothing written, the client waits
        assert parts.plan_row(plan_id)["status"] == "paused" and not note.exists() and client.poll() is None
    finally:
        free = parts.chiffon("ai", "host", "free", "desktop-linux")
    assert free.returncode == 0, free.stderr
    out, err = client.communicate(timeout=180)
    assert client.returncode == 0, err[-4000:]
    assert json.loads(out)["status"] == "succeeded"
    assert note.read_text() == "left by chiffon\n"
    assert parts.plan_row(plan_id)["status"] == "succeeded"
    tasks = parts.run_tasks(plan_id)  # the paused attempt, then the resumed one: both on east's worker
    assert [t["status"] for t in tasks] == ["succeeded", "succeeded"] and all(
        t["worker"].startswith("east-") for t in tasks), tasks
    audit = parts.chiffon("east", "audit", "--plan", plan_id, "--json")  # the worker records in east's audit repo
    kinds = [r["kind"] for r in json.loads(audit.stdout)["records"]]
    assert {"pause", "resume", "run"} <= set(kinds), kinds


def test_a_worker_killed_on_east_mid_run_is_reconciled_by_the_worker_on_desktop(parts: Spread) -> None:
    plan_id = parts.plan(SLOW_REQUEST)
    parts.approve(plan_id)
    client = parts.follow("ai", "execute", plan_id, "--json")
    try:
        run = parts.wait_run(plan_id)
        assert parts.owner("east", run["id"])["host"] == "east"
        parts.start_worker("desktop-linux")
        parts.kill("worker-east")
        # desktop's worker takes the silent worker's task over and, once east's run has not beaten for
        # RUN_SILENT_S, records it interrupted
        row = parts.wait_status(plan_id, {"succeeded", "failed"}, execution.RUN_SILENT_S + 60)
        assert row["status"] == "failed", (row, parts.run_tasks(plan_id))
        [run] = parts.run_rows(plan_id)
        assert run["status"] == "failed"
        assert any(t["worker"].startswith("desktop-linux-") and t["status"] == "succeeded"
                   for t in parts.run_tasks(plan_id)), parts.run_tasks(plan_id)
        said = parts.chiffon("ai", "status", plan_id, "--json")
        reasons = json.loads(said.stdout)["outcome_reasons"]
        assert "on east stopped answering" in reasons[0], reasons
    finally:
        if client.poll() is None:
            client.kill()
        client.communicate()
        parts.stop("worker-desktop-linux")
        parts.start_worker("east")  # as systemd would: it reconciles what was left (the test below)
        parts.wait_status(plan_id, {"succeeded", "failed"}, 60)


def test_a_worker_killed_on_east_mid_run_is_reconciled_when_it_restarts_and_the_client_told(parts: Spread) -> None:
    count = parts.lab["east"].path("/opt/homelab/slow-count.txt")
    before = len(count.read_text().splitlines()) if count.exists() else 0
    plan_id = parts.plan(SLOW_REQUEST)
    parts.approve(plan_id)
    client = parts.follow("ai", "execute", plan_id, "--json")
    try:
        run = parts.wait_run(plan_id)
        owner = parts.owner("east", run["id"])
        assert owner["host"] == "east"
        parts.kill("worker-east")
        time.sleep(5)  # systemd's RestartSec in the units of `chiffon deploy systemd`
        parts.start_worker("east")
        out, err = client.communicate(timeout=120)
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
    assert client.returncode == 1 and "interrupted" in err + out, err[-3000:]
    row = parts.wait_status(plan_id, {"succeeded", "failed"}, 30)
    assert row["status"] == "failed"
    [run] = parts.run_rows(plan_id)
    assert run["status"] == "failed"
    tasks = parts.run_tasks(plan_id)
    assert all(t["worker"].startswith("east-") for t in tasks) and tasks[-1]["attempts"] == 2, tasks
    audit = json.loads(parts.chiffon("east", "audit", "--plan", plan_id, "--json").stdout)["records"]
    runs = [r for r in audit if r["kind"] == "run"]
    assert len(runs) == 1 and "interrupted" in json.dumps(runs[0]), runs
    status = parts.chiffon("ai", "status", plan_id)
    assert status.returncode == 0 and "failed" in status.stdout, status.stdout + status.stderr
    time.sleep(10)  # the orphaned ansible-playbook of the killed worker finishes its sleep: at most one line
    assert len(count.read_text().splitlines()) - before <= 1 if count.exists() else True


def test_redis_killed_on_east_is_told_by_the_cli_on_ai_and_the_run_converges_when_it_is_back(parts: Spread) -> None:
    count = parts.lab["east"].path("/opt/homelab/slow-count.txt")
    before = len(count.read_text().splitlines()) if count.exists() else 0
    plan_id = parts.plan(SLOW_REQUEST)
    parts.approve(plan_id)
    client = parts.follow("ai", "execute", plan_id, "--json")
    try:
        parts.wait_run(plan_id)
        parts.services.kill_redis()
        out, err = client.communicate(timeout=120)
        assert client.returncode == 2, err[-3000:]
        assert "Redis stopped answering" in err and f"chiffon status {plan_id}" in err, err[-3000:]
        assert "Traceback" not in err
        down = parts.chiffon("ai", "host", "list", timeout=120)
        assert down.returncode == 2 and "Redis" in down.stderr and "Traceback" not in down.stderr, down.stderr
        # PostgreSQL is on ai: the worker on east records the run's end although Redis is gone
        row = parts.wait_status(plan_id, {"succeeded", "failed"}, 60)
        assert row["status"] == "succeeded"
    finally:
        if client.poll() is None:
            client.kill()
            client.communicate()
        if parts.services.redis is None:
            parts.services.start_redis()
        # the worker on east reads again once Redis is back (the next test): nothing to restart
    status = parts.chiffon("ai", "status", plan_id)
    assert status.returncode == 0 and "succeeded" in status.stdout, status.stdout + status.stderr
    assert len(count.read_text().splitlines()) == before + 1  # applied once
    [run] = parts.run_rows(plan_id)
    assert run["status"] == "succeeded"


def test_the_worker_on_east_takes_the_next_plan_after_redis_restarts(parts: Spread) -> None:
    parts.services.kill_redis()
    time.sleep(2)  # the worker's next read finds Redis gone
    parts.services.start_redis()
    plan_id = parts.plan(DESKTOP_REQUEST)
    parts.approve(plan_id)
    worker = parts.procs["worker-east"]
    done = parts.chiffon("ai", "execute", plan_id, "--json", timeout=120)  # the same worker, never restarted
    assert worker.poll() is None and parts.procs["worker-east"] is worker
    assert done.returncode == 0, done.stderr[-3000:]
