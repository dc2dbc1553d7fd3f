"""The `chiffon` command line, as a user runs it (no TTY)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import git
import pytest
import yaml

from tests.conftest import KUMA_REQUEST
from tests.fixtures import docker_standin

CHIFFON = str(Path(sys.executable).parent / "chiffon")


def chiffon(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``chiffon ARGS``; a hang fails the test with the process's Python tracebacks."""
    proc = subprocess.Popen([CHIFFON, *args], env={**env, "PYTHONFAULTHANDLER": "1"}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # faulthandler dumps every thread's stack to stderr
        stdout, stderr = proc.communicate(timeout=30)
        pytest.fail(f"chiffon {' '.join(args)} hung for 300 s; its stacks:\n{stderr[-6000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_run_with_approve_deploys_kuma_with_one_monitor_per_portal(
    cli_env: dict[str, str], repo: Path, home: Path, tmp_path: Path
) -> None:
    docker = docker_standin.install(tmp_path / "docker-bin", daemon=False)  # Docker here, its daemon down
    env = {**cli_env, "HOMELAB_ROOT": str(tmp_path), "PATH": f"{docker}:{cli_env['PATH']}"}
    proc = chiffon(env, "run", KUMA_REQUEST, "--repo", str(repo), "--approve", "--json")
    assert proc.returncode == 5, proc.stderr  # partial: applied, but what was asked for is not in place
    out = json.loads(proc.stdout)
    assert out["outcome"] == "partial" and out["outcome_reasons"][0].startswith("Uptime Kuma is not running: ")
    assert [(c["name"], c["ok"]) for c in out["checks"]] == [("Uptime Kuma is running", False),
                                                             ("Uptime Kuma answers on port 3001", False)]
    portals = yaml.safe_load((repo / "group_vars" / "all.yml").read_text())["portals"]
    assert out["playbook"] == "deploy-uptime-kuma.yml" and out["status"] == "succeeded"
    assert out["monitors"] == [p["name"] for p in portals]
    assert git.Repo(home / "audit").commit(out["audit_commit"]).hexsha == out["audit_commit"]
    monitors = json.loads((tmp_path / "east" / "uptime-kuma" / "monitors.json").read_text())["monitorList"]
    assert [m["url"] for m in monitors] == [p["url"] for p in portals]
    assert (tmp_path / "east" / "uptime-kuma" / "compose.yaml").is_file()
    assert out["container_started"] is False and any("container_started: false" in w for w in out["warnings"])

    audit = chiffon(env, "audit", "--json", "--service", "uptime-kuma")
    records = json.loads(audit.stdout)["records"]
    assert any(r["kind"] == "run" and r["plan_id"] == out["plan_id"] for r in records)


def test_run_without_approve_and_without_tty_exits_3_and_changes_nothing(
    cli_env: dict[str, str], repo: Path, tmp_path: Path
) -> None:
    env = {**cli_env, "HOMELAB_ROOT": str(tmp_path)}
    proc = chiffon(env, "run", KUMA_REQUEST, "--repo", str(repo), "--json")
    assert proc.returncode == 3, proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "awaiting_approval" and out["plan_id"].startswith("plan-")
    assert f"chiffon approve {out['plan_id']}" in proc.stderr.replace("\n", " ")
    assert not (tmp_path / "east").exists()


def test_approve_then_execute_out_of_band(cli_env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    docker = docker_standin.install(tmp_path / "docker-bin")  # Docker up: the run is achieved, exit 0
    env = {**cli_env, "HOMELAB_ROOT": str(tmp_path), "PATH": f"{docker}:{cli_env['PATH']}"}
    try:
        plan_id = json.loads(chiffon(env, "run", "deploy redis", "--repo", str(repo), "--json").stdout)["plan_id"]
        assert chiffon(env, "approve", plan_id, "--reason", "maintenance window", "--yes").returncode == 0
        again = chiffon(env, "approve", plan_id, "--yes")
        assert again.returncode == 2 and "only a pending plan" in again.stderr
        done = chiffon(env, "execute", plan_id, "--json")
    finally:
        docker_standin.stop(docker)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "succeeded" and out["outcome"] == "achieved"
    # no chiffon.yml check for it: the container the compose template names is checked
    assert out["checks"][0]["name"] == "container redis is running" and out["checks"][0]["ok"]
    assert (tmp_path / "east" / "redis" / "redis.conf").is_file()


def test_request_that_matches_nothing_exits_2_naming_the_closest(cli_env: dict[str, str], repo: Path) -> None:
    proc = chiffon(cli_env, "run", "bake a chocolate cake", "--repo", str(repo), "--approve")
    assert proc.returncode == 2
    assert "no playbook matches" in proc.stderr and "Traceback" not in proc.stderr


def test_unreachable_postgres_is_a_clear_message_not_a_traceback(cli_env: dict[str, str], repo: Path) -> None:
    env = {**cli_env, "CHIFFON_DATABASE_URL": "postgresql://chiffon:pw@127.0.0.1:1/chiffon"}
    proc = chiffon(env, "run", "deploy redis", "--repo", str(repo), "--approve")
    assert proc.returncode == 2
    assert "PostgreSQL at postgresql://chiffon:***REDACTED***@127.0.0.1:1/chiffon is unreachable" in " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr


def test_repo_without_an_inventory_answers_then_blocks_with_the_fix_and_exits_2(cli_env: dict[str, str],
                                                                                 tmp_path: Path) -> None:
    repo = tmp_path / "[bold]not-git[red]"  # square brackets in a path must print as written
    repo.mkdir()
    (repo / "redis.yml").write_text("# Deploy Redis\n- hosts: all\n  tasks: [{ansible.builtin.debug: {}}]\n")
    (repo / "hosts.example").write_text("[all]\nlocalhost\n")
    proc = chiffon(cli_env, "run", "deploy redis", "--repo", str(repo), "--approve", "--json")
    assert proc.returncode == 2, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["status"], out["playbook"], out["inventory"]) == ("blocked", "redis.yml", "hosts")
    assert "copy hosts.example to hosts" in out["blocked_reason"]
    text = " ".join(proc.stderr.split())
    assert "copy hosts.example to hosts" in text and "Nothing changed" in text
    assert "Traceback" not in proc.stderr and "MarkupError" not in proc.stderr


def test_doctor_reports_every_part(cli_env: dict[str, str]) -> None:
    proc = chiffon(cli_env, "doctor", "--json")
    report = json.loads(proc.stdout)
    parts = {r["service"]: r["status"] for r in report["parts"]}
    assert set(parts) == {"postgresql", "redis", "chromadb", "audit", "iac-repo", "ansible", "docker", "voice", "llm",
                          "backup", "purge", "credential-files", "approvals", "host:ai", "host:desktop", "host:east"}
    assert parts["llm"] == "ok"  # no tiers configured: retrieval-only planning is a valid setup
    assert parts["postgresql"] in ("ok", "healthy") and parts["redis"] in ("ok", "healthy")
    assert report["service"] == "chiffon" and report["status"] in ("ok", "healthy", "degraded")
    assert proc.returncode == 0


def test_doctor_names_the_part_that_is_down(cli_env: dict[str, str]) -> None:
    proc = chiffon({**cli_env, "CHIFFON_CHROMA_URL": "http://127.0.0.1:9"}, "doctor", "--json")
    report = json.loads(proc.stdout)
    assert report["status"] == "degraded" and proc.returncode == 0  # the suite works partly
    chroma = next(p for p in report["parts"] if p["service"] == "chromadb")
    assert chroma["status"] == "failed"
    assert any(issue.startswith("chromadb failed:") for issue in report["issues"])


def test_doctor_fails_when_the_store_is_down(cli_env: dict[str, str]) -> None:
    proc = chiffon({**cli_env, "CHIFFON_DATABASE_URL": "postgresql://chiffon@127.0.0.1:9/chiffon"}, "doctor", "--json")
    report = json.loads(proc.stdout)
    assert report["status"] == "failed" and proc.returncode == 2
    assert "127.0.0.1:9" in " ".join(report["issues"])


def test_task_commands_refuse_bad_input_and_list(cli_env: dict[str, str]) -> None:
    bad = chiffon(cli_env, "task", "submit", "wizard", "conjure a cluster")
    assert bad.returncode == 2 and "unknown role 'wizard'" in bad.stderr and "developer" in bad.stderr
    empty = chiffon(cli_env, "task", "submit", "developer", "  ")
    assert empty.returncode == 2 and "goal: is empty" in empty.stderr
    listed = chiffon(cli_env, "task", "list", "--json")
    assert listed.returncode == 0 and isinstance(json.loads(listed.stdout), list)
    missing = chiffon(cli_env, "task", "cancel", "task-000000000000")
    assert missing.returncode == 2 and "no task" in missing.stderr
    workers = chiffon(cli_env, "worker", "--roles", "wizard")
    assert workers.returncode == 2 and "unknown role(s) wizard" in workers.stderr


def test_a_separate_chiffon_worker_runs_approved_plans(cli_env: dict[str, str], repo: Path, tmp_path: Path) -> None:
    """Deployed mode (no in-process worker): `chiffon worker --roles infra` runs what `chiffon execute` queues."""
    env = {**cli_env, "CHIFFON_WORKER_IN_PROCESS": "false", "HOMELAB_ROOT": str(tmp_path)}  # its own targets
    plan_id = json.loads(chiffon(env, "run", "deploy redis", "--repo", str(repo), "--json").stdout)["plan_id"]
    assert chiffon(env, "approve", plan_id, "--yes").returncode == 0
    worker = subprocess.Popen([CHIFFON, "worker", "--roles", "infra"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        done = chiffon(env, "execute", plan_id, "--json")
    finally:
        worker.send_signal(signal.SIGTERM)
        _, said = worker.communicate(timeout=60)
    assert done.returncode == 5, done.stderr  # partial: no Docker engine here, so the redis container is not running
    assert json.loads(done.stdout)["status"] == "succeeded"
    assert "running approved plans" in said
    assert (tmp_path / "east" / "redis" / "redis.conf").is_file()


def test_task_submit_says_at_once_when_no_worker_serves_the_role(cli_env: dict[str, str], tmp_path: Path) -> None:
    env = {**cli_env, "CHIFFON_WORKER_IN_PROCESS": "false"}
    queued = chiffon(env, "task", "submit", "developer", "summarise the README", "--json")
    assert queued.returncode == 0, queued.stderr
    task_id = json.loads(queued.stdout)["id"]
    said = " ".join(queued.stderr.split())
    assert f"no worker serves 'developer' now, so {task_id} waits in the queue" in said
    assert "chiffon worker --roles developer" in said and "--wait" in said
    assert chiffon(env, "task", "cancel", task_id).returncode == 0

    before = len(json.loads(chiffon(env, "task", "list", "--json", "--limit", "500").stdout))
    refused = chiffon(env, "task", "submit", "developer", "summarise the README", "--wait", "5")
    assert refused.returncode == 2 and "no LLM is configured" in refused.stderr and "Nothing was queued" in refused.stderr
    assert len(json.loads(chiffon(env, "task", "list", "--json", "--limit", "500").stdout)) == before

    # a model configured (the tiny random-weight llama, in-process): --wait runs the task here, to its end
    from chiffon.servers.llm.tiny_model import write_tiny_llama

    model = write_tiny_llama(tmp_path / "tiny.gguf")
    tiny = {**env, "CHIFFON_LLM__BACKENDS": json.dumps({"tiny": {"kind": "llamacpp-inprocess",
                                                                  "model_path": str(model), "n_ctx": 2048}}),
            "CHIFFON_LLM__TIERS": json.dumps({t: {"backend": "tiny", "model": "tiny", "context_window": 2048}
                                              for t in ("quick", "local")}),
            "CHIFFON_TASKS__MALFORMED_RETRIES": "0"}
    here = chiffon(tiny, "task", "submit", "developer", "summarise the README", "--wait", "240", "--json")
    assert here.returncode == 0, here.stderr
    ran = json.loads(here.stdout)
    assert "no worker serves 'developer': running task-" in here.stderr
    assert ran["status"] in ("succeeded", "failed", "escalated") and ran["attempts"] >= 1  # it ran, whatever
    # random weights say: never a task left queued with no one to run it

    worker = subprocess.Popen([CHIFFON, "worker", "--roles", "developer"], env=tiny, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert worker.stderr is not None
        while ": serving " not in (line := worker.stderr.readline()):
            assert line, "the worker did not start"
        served = chiffon(tiny, "task", "submit", "developer", "summarise the README", "--json")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=120)
    assert served.returncode == 0, served.stderr
    assert "no worker serves" not in served.stderr  # a live worker announced the role
