"""One plan followed across processes: JSON log records carry its plan and run ids, and `chiffon logs --plan`
finds them (and nothing else) in CHIFFON_HOME/logs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.e2e.test_cli import chiffon


def test_a_runs_records_carry_its_ids_and_chiffon_logs_follows_the_plan(
        cli_env: dict[str, str], repo: Path, home: Path, tmp_path: Path) -> None:
    env = {**cli_env, "HOMELAB_ROOT": str(tmp_path)}
    plan_id = json.loads(chiffon(env, "run", "deploy redis", "--repo", str(repo), "--json").stdout)["plan_id"]
    other = json.loads(chiffon(env, "run", "deploy redis", "--repo", str(repo), "--json").stdout)["plan_id"]
    assert chiffon(env, "approve", plan_id, "--yes").returncode == 0
    logged = {**env, "CHIFFON_LOG_FORMAT": "json", "CHIFFON_LOG_LEVEL": "info"}
    done = chiffon(logged, "execute", plan_id, "--json")
    assert done.returncode == 5, done.stderr  # partial: no Docker engine here, so the redis container is not running
    run_id = json.loads(done.stdout)["run_id"]
    lines = [line for line in done.stderr.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    ours = [r for r in records if r.get("plan") == plan_id]
    assert ours and all(r["run"] == run_id and r["part"] == "cli" and r["ts"].endswith("+00:00") for r in ours)
    assert all(r["task"].startswith("task-") for r in ours)  # run through an infra task: its id is bound too
    assert any(r["message"].startswith(f"run {run_id} of plan {plan_id} started") for r in ours)
    assert any(r["message"].startswith(f"run {run_id} ended: partial (Ansible succeeded)") for r in ours)

    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    name = f"test-{uuid.uuid4().hex[:8]}.log"
    (logs / name).write_text("a text line that is no record\n" + "\n".join(lines) + "\n"
                             + json.dumps({"ts": "2026-01-01T00:00:00.000+00:00", "level": "INFO", "logger": "x",
                                           "message": "another plan", "part": "worker", "plan": other}) + "\n")
    try:
        found = chiffon(env, "logs", "--plan", plan_id, "--json")
        assert found.returncode == 0, found.stderr
        shown = [json.loads(line) for line in found.stdout.splitlines()]
        assert shown == sorted(ours, key=lambda r: r["ts"])
        text = chiffon(env, "logs", "--run", run_id)
        assert f"run {run_id} of plan {plan_id} started" in text.stdout
        assert f"[plan={plan_id} run={run_id} task=task-" in text.stdout  # the infra task that ran it, too
        none = chiffon(env, "logs", "--plan", "plan-nothing")
        assert none.returncode == 0 and none.stdout == "" and "no log records for plan plan-nothing" in none.stderr
    finally:
        (logs / name).unlink()
