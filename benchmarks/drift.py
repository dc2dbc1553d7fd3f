"""Drift on a 30-unit fixture repo: is a hand change found, is nothing else reported, and what does it cost?

Per round, in a fresh repo and fresh target folders (tests/fixtures/drift_repo.py: 30 playbooks rendering a
template and copying a file under ``HOMELAB_ROOT/<host>`` with the ``local`` inventory, and ``site.yml`` importing
them all):

1. the repo is applied once for real through chiffon: a plan of ``site.yml``, approved, executed;
2. one target file is edited by hand (``log_level = info`` -> ``debug`` in unit 7's config);
3. ``ansible-playbook --check --diff site.yml`` by hand, the baseline (timed before and after the drift run; the
   mean is used, so machine noise hits both sides alike);
4. :func:`chiffon.servers.ansible.drift.run_drift` over the repo (timed).

Figures per round, then the median and the spread (min, max) over the rounds:

* ``found_hand_change``: the report's ``drifted`` holds the edited unit on its host with the template task;
* ``false_positives``: every other drifted (unit, host, task), plus never-run pairs and errors (0 required);
* ``cost_ratio``: drift wall time / the baseline's, on the same machine in the same round;
* ``drift_s``, ``check_s``: the two wall times, seconds.

    uv run --group test python benchmarks/drift.py [--rounds 3] [--units 30] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.orchestrator.compose import infra_service  # noqa: E402
from chiffon.servers.ansible import drift, execution, plans  # noqa: E402
from chiffon.shared.config import load_settings  # noqa: E402
from chiffon.shared.runtime import Runtime, open_runtime, stop_embedded  # noqa: E402
from tests.conftest import git_commit_all  # noqa: E402
from tests.fixtures.drift_repo import HOSTS, make_drift_repo, service_name, target  # noqa: E402

EDITED = 7  # the unit whose target file is edited by hand
BIN = Path(sys.executable).parent


def check_by_hand(repo: Path, env: dict[str, str]) -> float:
    """Wall seconds of one ``ansible-playbook --check --diff site.yml``; raises when it fails."""
    started = time.perf_counter()
    subprocess.run([str(BIN / "ansible-playbook"), "--check", "--diff", "-i", "inventories/local.ini", "site.yml"],
                   cwd=repo, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=1800)
    return time.perf_counter() - started


async def one_round(rt: Runtime, base: Path, units: int) -> dict[str, Any]:
    token = secrets.token_hex(4)
    targets = Path(os.environ["HOMELAB_ROOT"])
    repo = make_drift_repo(base / f"repo-{token}", units, token)
    git_commit_all(repo)
    svc = infra_service(rt, repo)
    catalog = await svc.catalog()
    plan = await plans.create_plan(rt, catalog, "site.yml")
    await plans.decide(rt, plan.id, "approved", approver="benchmark", channel="cli")
    applied = await execution.execute(rt, catalog, plan.id)
    assert applied.status == "succeeded", applied
    host = HOSTS[EDITED % len(HOSTS)]
    conf = target(targets, host, token, EDITED)
    conf.write_text(conf.read_text().replace("log_level = info", "log_level = debug"))
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1"}
    before = await asyncio.to_thread(check_by_hand, repo, env)
    started = time.perf_counter()
    report = await drift.run_drift(rt, catalog)
    drift_s = time.perf_counter() - started
    after = await asyncio.to_thread(check_by_hand, repo, env)
    check_s = (before + after) / 2
    unit, task = f"deploy-{service_name(EDITED)}.yml", f"Render the {service_name(EDITED)} config"
    found = [(d.unit, d.host, t.task) for d in report.drifted for t in d.tasks]
    others = [f for f in found if f != (unit, host, task)]
    return {"units": report.units, "found_hand_change": (unit, host, task) in found,
            "false_positives": len(others) + len(report.never_run) + len(report.errors),
            "reported": found[:5], "never_run": len(report.never_run), "errors": [e.reason for e in report.errors],
            "drift_s": round(drift_s, 2), "check_s": round(check_s, 2), "cost_ratio": round(drift_s / check_s, 2)}


def spread(rounds: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [r[key] for r in rounds]
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


async def main(rounds: int, units: int, concurrency: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="chiffon-drift-bench-"))
    os.environ["HOMELAB_ROOT"] = str(base / "targets")
    os.environ["CHIFFON_ANSIBLE__PASS_ENV"] = '["HOMELAB_ROOT"]'
    os.environ["CHIFFON_DRIFT__CONCURRENCY"] = str(concurrency)
    os.environ.setdefault("CHIFFON_HOST", "benchmark")
    os.environ.setdefault("CHIFFON_LLM__PACKAGED_DEFAULT", "off")
    settings = load_settings(home=base / "home")
    settings.drift.live_tasks = True  # the fixture's services probe their container with check_mode: false
    results = []
    try:
        async with open_runtime(settings) as rt:
            for _ in range(rounds):
                results.append(await one_round(rt, base, units))
    finally:
        await stop_embedded(settings)
    return {"benchmark": "drift", "units": units, "concurrency": concurrency, "rounds": results,
            "found_hand_change": all(r["found_hand_change"] for r in results),
            "false_positives": max(r["false_positives"] for r in results),
            "cost_ratio": spread(results, "cost_ratio"), "drift_s": spread(results, "drift_s"),
            "check_s": spread(results, "check_s")}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--units", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.rounds, args.units, args.concurrency))))
