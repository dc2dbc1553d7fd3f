"""Does a run's outcome say what happened on the machine, and what do its checks cost?

A labelled set of real runs (plan, approval, run, through chiffon's one run path) on a copy of the example repo
plus fixture playbooks, in a fresh CHIFFON_HOME with the embedded PostgreSQL:

* Uptime Kuma with no ``docker`` command, with Docker's daemon down, with Docker up (twice), Redis with the
  daemon down (a derived check): Docker is a stand-in answering in Docker's own format
  (``tests/fixtures/docker_standin.py``; no Docker daemon runs here) whose ``compose up`` starts a real HTTP
  server on the published port;
* the PostgreSQL backup with the database down and up (the embedded PostgreSQL's own ``pg_dumpall``);
* a role skipped by its condition, an optional task skipped by configuration, an ``ignore_errors`` failure, an
  install-if-missing step skipped because the thing is there, a failing task, a playbook with no checks.

Each case is labelled by what happened, read independently of chiffon after the run (is the port open, is
there a fresh dump, does the file exist), and the label is checked against that reading before it scores.
``outcome_accuracy`` = cases whose outcome equals the label / cases (target 1.0).

``verify_overhead_ratio``: the same plans run with and without their checks (the expectations removed from the
stored plan before approval), alternating, ``(median with - median without) / median without`` of the run's
duration (target <= 0.15).

    uv run python benchmarks/outcomes.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.fixtures import docker_standin  # noqa: E402

EXAMPLE = ROOT / "examples" / "homelab-infra"
TARGET_ACCURACY, TARGET_OVERHEAD = 1.0, 0.15

FIXTURES = {
    "feature-role.yml": """# Deploy the optional feature (a role, off unless feature_enabled)
- hosts: ai
  gather_facts: false
  pre_tasks:
    - name: Create the feature folder
      ansible.builtin.file: {path: "{{ homelab_root }}/feature", state: directory}
  roles:
    - role: feature
      when: feature_enabled | default(false)
""",
    "roles/feature/tasks/main.yml": """- name: Render the feature config
  ansible.builtin.copy:
    content: "feature on\\n"
    dest: "{{ homelab_root }}/feature/feature.conf"
""",
    "optional-extra.yml": """# Render the app config, and an extra file when asked
- hosts: ai
  gather_facts: false
  tasks:
    - name: Create the app folder
      ansible.builtin.file: {path: "{{ homelab_root }}/app", state: directory}
    - name: Render the app config
      ansible.builtin.copy: {content: "app\\n", dest: "{{ homelab_root }}/app/app.conf"}
    - name: Render the extra file
      ansible.builtin.copy: {content: "extra\\n", dest: "{{ homelab_root }}/app/extra.conf"}
      when: app_extra | default(false)
""",
    "ignored-failure.yml": """# Reload the proxy (errors ignored) after rendering its config
- hosts: ai
  gather_facts: false
  tasks:
    - name: Create the proxy folder
      ansible.builtin.file: {path: "{{ homelab_root }}/proxy", state: directory}
    - name: Render the proxy config
      ansible.builtin.copy: {content: "proxy\\n", dest: "{{ homelab_root }}/proxy/proxy.conf"}
    - name: Reload the proxy
      ansible.builtin.command: /bin/false
      ignore_errors: true
""",
    "install-if-missing.yml": """# Install the tool when it is missing, then render its config
- hosts: ai
  gather_facts: false
  tasks:
    - name: Look for the tool
      ansible.builtin.command: /bin/true
      register: tool_probe
      changed_when: false
      failed_when: false
      check_mode: false
    - name: Install the tool
      ansible.builtin.command: /bin/false
      when: tool_probe.rc != 0
    - name: Create the tool folder
      ansible.builtin.file: {path: "{{ homelab_root }}/tool", state: directory}
    - name: Render the tool config
      ansible.builtin.copy: {content: "tool\\n", dest: "{{ homelab_root }}/tool/tool.conf"}
""",
}
CHECKS = """
  feature-role.yml:
    - {name: the feature is configured, failing: the feature is not configured, file: "{{ homelab_root }}/feature/feature.conf"}
  optional-extra.yml:
    - {name: the app is configured, failing: the app is not configured, file: "{{ homelab_root }}/app/app.conf"}
  ignored-failure.yml:
    - {name: the proxy config is in place, file: "{{ homelab_root }}/proxy/proxy.conf"}
  install-if-missing.yml:
    - {name: the tool is configured, file: "{{ homelab_root }}/tool/tool.conf"}
"""


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _fresh(pattern_dir: Path, glob: str, since: float) -> bool:
    return any(p.stat().st_mtime >= since - 1 for p in pattern_dir.glob(glob)) if pattern_dir.is_dir() else False


async def main(rounds: int) -> dict[str, object]:
    from chiffon.orchestrator.compose import infra_service
    from chiffon.servers.ansible import execution, plans
    from chiffon.shared.config import load_settings
    from chiffon.shared.runtime import open_runtime, stop_embedded

    work = Path(tempfile.mkdtemp(prefix="chiffon-outcomes-"))
    repo, targets, docker = work / "repo", work / "targets", work / "docker-bin"
    shutil.copytree(EXAMPLE, repo)
    for name, text in FIXTURES.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    (repo / "chiffon.yml").write_text((repo / "chiffon.yml").read_text() + CHECKS)
    os.environ["HOMELAB_ROOT"] = str(targets)
    base_path = os.environ["PATH"]
    no_docker_path = os.pathsep.join(p for p in base_path.split(os.pathsep) if not (Path(p) / "docker").exists())
    settings = load_settings(home=work / "home")
    settings.ansible.pass_env = ["HOMELAB_ROOT", "PGHOST", "PGPORT", "PGUSER"]
    results: list[dict[str, object]] = []
    try:
        async with open_runtime(settings) as rt:
            svc = infra_service(rt, repo)
            url = urlparse(rt.store.url)
            import pgserver

            pg_bin = Path(pgserver.__file__).parent / "pginstall" / "bin"

            def env(path: str, db: bool | None = None) -> None:
                os.environ["PATH"] = path
                if db is None:
                    return
                os.environ["PGHOST"] = parse_qs(url.query).get("host", [url.hostname or ""])[0] if db \
                    else str(work / "no-database")
                os.environ["PGPORT"], os.environ["PGUSER"] = str(url.port or 5432), url.username or "postgres"

            async def run(playbook: str, *, checks: bool = True) -> execution.RunResult:
                plan = await plans.create_plan(rt, await svc.catalog(), playbook)
                if not checks:
                    await rt.store.pool.execute("UPDATE plans SET expectations='[]' WHERE id=$1", plan.id)
                await plans.decide(rt, plan.id, "approved", approver="benchmark", channel="cli")
                return await execution.execute(rt, await svc.catalog(), plan.id)

            kuma_dir, dumps = targets / "east" / "uptime-kuma", targets / "ai" / "backups" / "postgres"
            cases: list[tuple[str, str, Callable[[], None], str, Callable[[float], str]]] = [
                # (name, playbook, set-up, label, what happened on the machine -> the outcome it means)
                ("kuma, no docker command", "deploy-uptime-kuma.yml", lambda: env(no_docker_path), "partial",
                 lambda s: "achieved" if _port_open(3001) else "partial"),
                ("kuma, docker daemon down", "deploy-uptime-kuma.yml",
                 lambda: (docker_standin.install(docker, daemon=False), env(f"{docker}:{base_path}")), "partial",
                 lambda s: "achieved" if _port_open(3001) else "partial"),
                ("kuma, docker up", "deploy-uptime-kuma.yml",
                 lambda: (docker_standin.install(docker), env(f"{docker}:{base_path}")), "achieved",
                 lambda s: "achieved" if _port_open(3001) and (kuma_dir / "monitors.json").exists() else "partial"),
                ("kuma again, already running", "deploy-uptime-kuma.yml", lambda: None, "achieved",
                 lambda s: "achieved" if _port_open(3001) else "partial"),
                ("redis, docker daemon down (derived check)", "deploy-redis.yml",
                 lambda: (docker_standin.install(docker, daemon=False), env(f"{docker}:{base_path}")), "partial",
                 lambda s: "achieved" if (docker / "state" / "redis").exists() else "partial"),
                ("backup, database down", "backup-postgres.yml", lambda: env(f"{pg_bin}:{base_path}", db=False),
                 "partial", lambda s: "achieved" if _fresh(dumps, "all-*.sql.gz", s) else "partial"),
                ("backup, database up", "backup-postgres.yml", lambda: env(f"{pg_bin}:{base_path}", db=True),
                 "achieved", lambda s: "achieved" if _fresh(dumps, "all-*.sql.gz", s) else "partial"),
                ("role skipped by its condition", "feature-role.yml", lambda: env(base_path), "partial",
                 lambda s: "achieved" if (targets / "ai" / "feature" / "feature.conf").exists() else "partial"),
                ("optional task skipped by configuration", "optional-extra.yml", lambda: None, "achieved",
                 lambda s: "achieved" if _fresh(targets / "ai" / "app", "app.conf", s) else "partial"),
                ("ignore_errors failure", "ignored-failure.yml", lambda: None, "partial",
                 lambda s: "partial"),  # the reload failed: /bin/false cannot succeed
                ("install-if-missing skipped, tool present", "install-if-missing.yml", lambda: None, "achieved",
                 lambda s: "achieved" if _fresh(targets / "ai" / "tool", "tool.conf", s) else "partial"),
                ("a failing task", "break-things.yml", lambda: None, "failed", lambda s: "failed"),
                ("no checks at all", "echo-message.yml", lambda: None, "achieved",
                 lambda s: "achieved" if (targets / "ai" / "echo.txt").exists() else "partial"),
            ]
            from tests.conftest import ECHO_PLAYBOOK, FAIL_PLAYBOOK

            (repo / "echo-message.yml").write_text(ECHO_PLAYBOOK)
            (repo / "break-things.yml").write_text(FAIL_PLAYBOOK)
            for name, playbook, set_up, label, happened in cases:
                set_up()
                since = time.time()
                result = await run(playbook)
                truth = happened(since)
                results.append({"case": name, "label": label, "machine": truth, "outcome": result.outcome,
                                "first_reason": (result.outcome_reasons or [""])[0][:160],
                                "ok": result.outcome == label == truth})
            # the cost of checks: the same plans with and without them, alternating
            docker_standin.install(docker)  # Docker up, the database up: every check of these plans can pass
            env(f"{docker}:{pg_bin}:{base_path}", db=True)
            with_checks: list[float] = []
            without: list[float] = []
            for _ in range(rounds):
                for playbook in ("deploy-uptime-kuma.yml", "backup-postgres.yml", "optional-extra.yml"):
                    with_checks.append((await run(playbook)).duration_s)
                    without.append((await run(playbook, checks=False)).duration_s)
        await stop_embedded(settings)
    finally:
        docker_standin.stop(docker)
        shutil.rmtree(work, ignore_errors=True)
    accuracy = sum(1 for r in results if r["ok"]) / len(results)
    med_with, med_without = statistics.median(with_checks), statistics.median(without)
    overhead = (med_with - med_without) / med_without
    return {"cases": results, "outcome_accuracy": round(accuracy, 3), "target_accuracy": TARGET_ACCURACY,
            "run_s_with_checks_median": round(med_with, 3), "run_s_without_checks_median": round(med_without, 3),
            "verify_overhead_ratio": round(overhead, 3), "target_overhead": TARGET_OVERHEAD, "pairs": len(without),
            "pass": accuracy >= TARGET_ACCURACY and overhead <= TARGET_OVERHEAD}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="with/without-checks pairs per playbook")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.rounds)), indent=2))
