"""chiffon across the three-host lab (tests/lab, issue 32): SSH overhead, reconciliation after a worker's death on
another host, and the queue's latency across hosts.

Starts a lab (tests/lab/lab.py: ``ai``, ``east``, ``desktop-linux``, each with its own sshd), Debian's PostgreSQL
on ``ai`` and Redis on ``east`` (tests/lab/services.py), then measures:

* ``ssh_overhead_ratio``: from this machine (the controller, its own embedded PostgreSQL and Redis, planning by
  retrieval alone), the main job ``chiffon run "<Kuma request>" --repo R --inventory lab --approve --json`` against
  the lab over SSH, over the same by hand: ``ansible-playbook -i inventories/lab.ini deploy-uptime-kuma.yml --check
  --diff`` then ``ansible-playbook -i inventories/lab.ini deploy-uptime-kuma.yml``. Rounds alternate the two, east's
  ``/opt/homelab/uptime-kuma`` removed before each; one warm-up round of each is not counted; ratio of the medians
  (target <= 1.15, the same as benchmarks/ansible_overhead.py on localhost).
* ``reconcile_s``: the spread set-up (CLI on ``ai``, ``chiffon worker`` on ``east`` and ``desktop-linux``, every
  part with its own CHIFFON_HOME and the lab's URLs): a slow plan (``sleep 8``, then one line) is run with
  ``chiffon execute`` on ``ai``; 1 s into the run the worker on ``east`` is SIGKILLed; seconds from the kill until
  PostgreSQL holds the run as ended, recorded by the worker on ``desktop-linux`` once east's heartbeat has been
  silent for ``execution.RUN_SILENT_S`` (30 s). ``reconcile_restart_s``: the same with no other worker, east's
  started again 5 s after the kill (systemd's RestartSec): it records the run from the dead pid at once.
* ``cross_host_latency_ratio``: approve-to-running, ``runs.started_at - approvals.decided_at`` (both PostgreSQL's
  clock), for plans approved through the orchestrator's REST API on ``ai`` (``POST /api/v1/plans/ID/approve``,
  which queues the run; ``approvals.allow_tool_approval`` is turned on for the orchestrator here, only so the
  approval and the queueing are one request) with the worker on ``east``, over the same with the worker on ``ai``;
  ratio of the medians.

Prints one JSON object (seconds; ``*_rounds`` hold every round). Where a lab cannot start (not root, no
``ip netns``, Debian's postgresql or redis-server missing) it prints ``{"benchmark": "lab", "skipped": REASON}``
and exits 0.

    uv run python benchmarks/lab.py [--rounds 5] [--reconcile-rounds 1] [--latency-rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.lab.lab import Lab, missing  # noqa: E402
from tests.lab.services import (  # noqa: E402
    CHIFFON,
    DESKTOP_REQUEST,
    KUMA_REQUEST,
    SLOW_REQUEST,
    LabServices,
    Spread,
    make_repo,
    missing_packages,
)

PLAYBOOK = "deploy-uptime-kuma.yml"
TARGET_SSH_RATIO = 1.15
RESTART_AFTER_S = 5.0
BIN = Path(sys.executable).parent


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(cmds: list[list[str]], env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    for cmd in cmds:
        done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL, timeout=600)
        if done.returncode not in ok:
            raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def ssh_overhead(lab: Lab, repo: Path, work: Path, rounds: int) -> dict[str, Any]:
    """Median seconds of the main job by hand and through chiffon, over SSH to the lab; their ratio."""
    home = work / "controller-home"
    env = {**os.environ, "CHIFFON_HOME": str(home), "CHIFFON_HOST": "bench", "CHIFFON_LLM__PLANNER": "false",
           "CHIFFON_LLM__PACKAGED_DEFAULT": "off", "CHIFFON_EMBEDDED__IDLE_STOP_S": "0",
           "XDG_CONFIG_HOME": str(work / "no-xdg"), "CHIFFON_SYSTEM_CONFIG": str(work / "no-etc" / "chiffon.yaml"),
           "PATH": f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    kuma = lab["east"].path("/opt/homelab/uptime-kuma")
    base = [str(BIN / "ansible-playbook"), "-i", "inventories/lab.ini", PLAYBOOK]
    chiffon = [CHIFFON, "run", KUMA_REQUEST, "--repo", str(repo), "--inventory", "lab", "--approve", "--json"]
    raw: list[float] = []
    through: list[float] = []
    try:
        for i in range(rounds + 1):
            shutil.rmtree(kuma, ignore_errors=True)
            raw_s = _timed([base + ["--check", "--diff"], base], env, repo)
            shutil.rmtree(kuma, ignore_errors=True)
            # 5: partial, Ansible applied it but Kuma is not running (no Docker engine in the lab)
            chiffon_s = _timed([chiffon], env, ROOT, ok=(0, 5))
            _log(f"ssh round {i}{' (warm-up)' if i == 0 else ''}: raw {raw_s:.2f} s, chiffon {chiffon_s:.2f} s")
            if i:
                raw.append(raw_s)
                through.append(chiffon_s)
    finally:
        subprocess.run([CHIFFON, "down"], env=env, capture_output=True, timeout=120)
    raw_med, chiffon_med = statistics.median(raw), statistics.median(through)
    return {"raw_s": round(raw_med, 3), "chiffon_s": round(chiffon_med, 3),
            "ssh_overhead_ratio": round(chiffon_med / raw_med, 3),
            "ssh_rounds": {"raw_s": [round(x, 3) for x in raw], "chiffon_s": [round(x, 3) for x in through]}}


def reconcile(spread: Spread, rounds: int) -> dict[str, Any]:
    """Seconds from a SIGKILL of the worker on east, 1 s into a run, to the run recorded as ended: by the worker on
    desktop-linux (``reconcile_s``: it takes the task over and records the run once east's heartbeat has been
    silent for ``execution.RUN_SILENT_S``), and by east's worker started again 5 s after the kill, as systemd
    would (``reconcile_restart_s``, no other worker running)."""
    across: list[float] = []
    restart: list[float] = []
    for i in range(rounds):
        for path, found in (("across", across), ("restart", restart)):
            spread.start_worker("east")
            plan_id = spread.plan(SLOW_REQUEST)
            spread.approve(plan_id)
            client = spread.follow("ai", "execute", plan_id, "--json")
            try:
                run = spread.wait_run(plan_id)
                if spread.owner("east", run["id"])["host"] != "east":
                    raise RuntimeError(f"the run of {plan_id} is not east's")
                if path == "across":  # started only now, so that the run is east's, not desktop's
                    spread.start_worker("desktop-linux")
                time.sleep(1.0)  # in its sleep
                spread.kill("worker-east")
                killed = time.monotonic()
                if path == "restart":
                    time.sleep(RESTART_AFTER_S)
                    spread.start_worker("east")
                while spread.run_rows(plan_id)[-1]["status"] == "running":
                    if time.monotonic() - killed > 180:
                        raise RuntimeError(f"the run of {plan_id} was not reconciled within 180 s ({path})")
                    time.sleep(0.05)
                found.append(time.monotonic() - killed)
                client.communicate(timeout=60)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.communicate()
                for name in ("worker-east", "worker-desktop-linux"):
                    spread.stop(name)
            _log(f"reconcile round {i} ({path}): {found[-1]:.2f} s")
    return {"reconcile_s": round(statistics.median(across), 3), "reconcile_restart_s": round(statistics.median(restart), 3),
            "reconcile_rounds": {"across_s": [round(x, 3) for x in across],
                                 "restart_s": [round(x, 3) for x in restart]}}


def _approve_to_running(spread: Spread, rounds: int) -> list[float]:
    """approve-to-running seconds (PostgreSQL's clock) of ``rounds`` plans approved over the REST API."""
    import httpx

    headers = {"Authorization": f"Bearer {spread.token}"}
    seen = []
    for _ in range(rounds + 1):  # the first one warms the worker's and the orchestrator's paths up
        made = httpx.post(f"{spread.api}/api/v1/plans", headers=headers, timeout=300,
                          json={"request": DESKTOP_REQUEST, "inventory": "lab"})
        made.raise_for_status()
        plan_id = made.json()["plan_id"]
        approved = httpx.post(f"{spread.api}/api/v1/plans/{plan_id}/approve", headers=headers, timeout=60,
                              json={"reason": "benchmark"})
        approved.raise_for_status()
        spread.wait_status(plan_id, {"succeeded", "failed"}, 120)
        [row] = spread.query("SELECT extract(epoch FROM r.started_at - a.decided_at)::float8 AS s FROM runs r "
                             "JOIN approvals a ON a.plan_id = r.plan_id WHERE r.plan_id=$1", plan_id)
        seen.append(float(row["s"]))
    return seen[1:]


def cross_host_latency(spread: Spread, rounds: int) -> dict[str, Any]:
    """approve-to-running with the worker on east over with the worker on ai (the orchestrator on ai in both)."""
    spread.start("orchestrator", "ai", ["serve", "--transport", "http", "--host", spread.lab["ai"].address,
                                        "--port", "8765", "--repo", str(spread.repo)],
                 lambda _: _answers(f"{spread.api}/health"), CHIFFON_APPROVALS__ALLOW_TOOL_APPROVAL="true")
    spread.start_worker("east")
    cross = _approve_to_running(spread, rounds)
    spread.stop("worker-east")
    spread.start("worker-ai", "ai", ["worker", "--roles", "infra"], lambda text: ": running approved plans" in text)
    same = _approve_to_running(spread, rounds)
    spread.stop("worker-ai")
    _log(f"approve-to-running: cross-host {cross}, one host {same}")
    cross_med, same_med = statistics.median(cross), statistics.median(same)
    return {"cross_host_s": round(cross_med, 3), "same_host_s": round(same_med, 3),
            "cross_host_latency_ratio": round(cross_med / same_med, 3),
            "latency_rounds": {"cross_host_s": [round(x, 3) for x in cross],
                               "same_host_s": [round(x, 3) for x in same]}}


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the SSH comparison (plus a warm-up)")
    parser.add_argument("--reconcile-rounds", type=int, default=1)
    parser.add_argument("--latency-rounds", type=int, default=5, help="plans per layout (plus a warm-up each)")
    args = parser.parse_args()
    why = missing() or missing_packages()
    if why:
        return {"benchmark": "lab", "skipped": why}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chiffon-bench-lab-") as tmp:
        work = Path(tmp)
        try:
            lab = Lab(work / "lab").start()
        except (RuntimeError, OSError) as exc:
            return {"benchmark": "lab", "skipped": f"the lab did not start: {exc}"}
        spread: Spread | None = None
        services: LabServices | None = None
        try:
            lab.trust()
            services = LabServices(lab).start()
            repo = make_repo(lab, work / "homelab-infra")
            result: dict[str, Any] = {"benchmark": "lab", "rounds": args.rounds}
            result |= ssh_overhead(lab, repo, work, args.rounds)
            spread = Spread(lab, services, repo, work / "logs")
            spread.prepare()
            result |= reconcile(spread, args.reconcile_rounds)
            result |= cross_host_latency(spread, args.latency_rounds)
            result["target_ssh_overhead_ratio"] = TARGET_SSH_RATIO
            result["targets_met"] = result["ssh_overhead_ratio"] <= TARGET_SSH_RATIO
            result["duration_s"] = round(time.perf_counter() - started, 1)
            return result
        finally:
            if spread is not None:
                spread.stop_all()
            if services is not None:
                services.stop()
            lab.stop()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks remove the lab
    print(json.dumps(main()))
