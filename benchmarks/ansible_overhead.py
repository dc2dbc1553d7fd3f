"""What chiffon adds on top of a careful operator running Ansible by hand.

Per round, in fresh target dirs:

* raw: ``ansible-playbook --check --diff`` then ``ansible-playbook`` on the Kuma playbook;
* chiffon: ``chiffon run "<request>" --approve --json`` (match, check mode, plan stored,
  approval recorded, dispatch through Redis Streams, run, state in PostgreSQL, audit commits), planning by
  retrieval alone (``CHIFFON_LLM__PLANNER=false``: no model);
* chiffon with model: the same with the default planner, where the packaged quick-tier model (SmolLM2-135M
  with the llamacpp extra) chooses the playbook and explains it.

Rounds alternate raw and both chiffon variants so machine noise hits all alike; one warm-up
round of each (first-time PostgreSQL initdb, bytecode compilation) is not counted.
Prints one JSON line: medians in seconds, ``ratio = chiffon_s / raw_s`` (target: <= 1.15) and
``ratio_with_model = chiffon_with_model_s / raw_s`` (no target: the model's seconds are the feature).

    uv run python benchmarks/ansible_overhead.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "examples" / "homelab-infra"
PLAYBOOK = "deploy-uptime-kuma.yml"
REQUEST = "Deploy Uptime Kuma and add the existing portals to its config"
TARGET_RATIO = 1.15
BIN = Path(sys.executable).parent


def _timed(cmds: list[list[str]], env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    for cmd in cmds:
        done = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode not in ok:
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - start


def raw_round(env: dict[str, str]) -> float:
    """The operator: preview with --check --diff, then run."""
    base = [str(BIN / "ansible-playbook"), "-i", "inventories/local.ini", PLAYBOOK]
    return _timed([base + ["--check", "--diff"], base], env, REPO)


def chiffon_round(env: dict[str, str]) -> float:
    """chiffon: the whole main job, approved up front."""
    # 5: partial, Ansible applied it but Kuma is not running (no Docker engine here); raw ansible-playbook exits 0
    return _timed([[str(BIN / "chiffon"), "run", REQUEST, "--repo", str(REPO), "--approve", "--json"]], env, ROOT,
                  ok=(0, 5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="chiffon-bench-"))
    env = {**os.environ, "CHIFFON_HOME": str(work / "home"), "CHIFFON_EMBEDDED__IDLE_STOP_S": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    raw, chiffon, with_model = [], [], []
    for i in range(args.rounds + 1):
        raw_s = raw_round({**env, "HOMELAB_ROOT": str(work / f"raw-{i}")})
        chiffon_s = chiffon_round({**env, "HOMELAB_ROOT": str(work / f"chiffon-{i}"), "CHIFFON_LLM__PLANNER": "false"})
        model_s = chiffon_round({**env, "HOMELAB_ROOT": str(work / f"model-{i}")})
        if i:  # round 0 is the warm-up
            raw.append(raw_s)
            chiffon.append(chiffon_s)
            with_model.append(model_s)
    subprocess.run([str(BIN / "chiffon"), "down"], env=env, check=False, capture_output=True)  # embedded servers
    raw_s, chiffon_s, model_s = statistics.median(raw), statistics.median(chiffon), statistics.median(with_model)
    print(json.dumps({
        "benchmark": "ansible_overhead", "rounds": args.rounds, "raw_s": round(raw_s, 3),
        "chiffon_s": round(chiffon_s, 3), "ratio": round(chiffon_s / raw_s, 3), "target_ratio": TARGET_RATIO,
        "meets_target": chiffon_s / raw_s <= TARGET_RATIO,
        "chiffon_with_model_s": round(model_s, 3), "ratio_with_model": round(model_s / raw_s, 3),
        "raw_all_s": [round(x, 3) for x in raw], "chiffon_all_s": [round(x, 3) for x in chiffon],
        "chiffon_with_model_all_s": [round(x, 3) for x in with_model],
    }))


if __name__ == "__main__":
    main()
