"""Undo: what keeping before-states costs a real run, and whether the undo puts the files back byte for byte.

Per round, in a fresh target folder holding a config file (mode 0600, owner 1234:2345 when run as root, CRLF and
``{{ }}`` in it) and a line file:

* plain: ``run_playbook`` of a playbook that renders a template over the config (setting mode/owner), adds a line,
  creates a folder and a file in it, and runs a command: what a run cost before undo existed;
* keeping: the same run through :func:`servers.ansible.undo.keeping` (the read-only stat of the paths whose earlier
  mode/owner Ansible's diff does not report, then the run with every event handed to the Keeper);
* undo: the undo playbook :mod:`servers.ansible.undo_plan` writes from what was kept, run for real; then every
  file's bytes, mode, uid and gid are compared with the round's start.

No PostgreSQL: the runner and the undo modules are called directly (the plan/approve/execute path around them is
``tests/integration/test_undo.py``). Prints one JSON line: medians, spreads (max - min), ``keep_overhead_ratio``
(keeping / plain - 1) and ``byte_for_byte`` (every round). Target: byte_for_byte true.

    uv run python benchmarks/undo.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import stat
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.servers.ansible import undo, undo_plan  # noqa: E402
from chiffon.servers.ansible.runner import run_playbook  # noqa: E402

PLAYBOOK = """- name: Change files
  hosts: ai
  gather_facts: false
  tasks:
    - name: Render the config
      ansible.builtin.template: {src: app.conf.j2, dest: "{{ target }}/app.conf", mode: "0644"%(owner)s}
    - name: Add a line
      ansible.builtin.lineinfile: {path: "{{ target }}/lines.conf", line: "added=1"}
    - name: Create a folder
      ansible.builtin.file: {path: "{{ target }}/newdir", state: directory, mode: "0750"}
    - name: Write a file in it
      ansible.builtin.copy: {content: "fresh\\n", dest: "{{ target }}/newdir/fresh.txt"}
    - name: Run a command
      ansible.builtin.command: "true"
"""


def files(folder: Path) -> dict[str, tuple[bytes, int, int, int]]:
    out = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        out[str(path.relative_to(folder))] = (path.read_bytes() if path.is_file() else b"",
                                              stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
    return out


def reset(target: Path, root: bool) -> dict[str, tuple[bytes, int, int, int]]:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    conf = target / "app.conf"
    conf.write_bytes(b"maxmemory 1gb\r\n# {{ not templated }}\nno newline at end")
    os.chmod(conf, 0o600)
    if root:
        os.chown(conf, 1234, 2345)
    (target / "lines.conf").write_text("first=1\n")
    return files(target)


async def round_(work: Path, target: Path, n: int, root: bool) -> dict[str, object]:
    inventory = work / "inventory.ini"
    common = {"extra_vars": {"target": str(target)}, "timeout_s": 300}
    reset(target, root)
    start = time.perf_counter()
    await run_playbook(work, "change.yml", inventory, work / "runs" / f"run-plain{n:05d}", check=False, **common)
    plain = time.perf_counter() - start
    before = reset(target, root)
    start = time.perf_counter()
    run_dir = work / "runs" / f"run-keep0{n:05d}"
    await undo.keeping(run_playbook, "plan-bench")(work, "change.yml", inventory, run_dir, check=False, **common)
    keeping = time.perf_counter() - start
    kept = run_dir / undo.FOLDER
    items, lost = undo_plan.merge(undo_plan.read_kept(kept))
    items, refused = undo_plan.usable(items, kept / undo.BLOBS, None)
    text = undo_plan.playbook_text(f"run-keep0{n:05d}", "plan-bench", items, kept / undo.BLOBS, become=False)
    (work / f"undo{n}.yml").write_text(text)
    start = time.perf_counter()
    outcome = await run_playbook(work, f"undo{n}.yml", inventory, work / "runs" / f"undo{n}", check=False, **common)
    undone = time.perf_counter() - start
    return {"plain_s": plain, "keeping_s": keeping, "undo_s": undone, "undo_status": outcome.status,
            "byte_for_byte": files(target) == before, "restored": len(items),
            "not_reversible": [x.module for x in [*lost, *refused]]}


async def main(rounds: int) -> dict[str, object]:
    root = os.geteuid() == 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "change.yml").write_text(PLAYBOOK % {"owner": ", owner: root, group: root" if root else ""})
        (work / "app.conf.j2").write_text("maxmemory 2gb\n")
        (work / "inventory.ini").write_text(f"ai ansible_connection=local ansible_python_interpreter={sys.executable}\n")
        target = work / "target"
        reset(target, root)
        # the plan's check, as create_plan makes it: what the keeping run stats comes from its events
        await run_playbook(work, "change.yml", work / "inventory.ini", work / "runs" / "plan-bench-check", check=True,
                           extra_vars={"target": str(target)})
        results = [await round_(work, target, n, root) for n in range(rounds + 1)][1:]  # round 0: warm-up

    def summary(key: str) -> tuple[float, float]:
        values = [float(r[key]) for r in results]  # type: ignore[arg-type]
        return round(statistics.median(values), 3), round(max(values) - min(values), 3)

    plain, plain_spread = summary("plain_s")
    keeping, keeping_spread = summary("keeping_s")
    undone, undo_spread = summary("undo_s")
    return {"rounds": rounds, "owner_checked": root, "plain_s": plain, "plain_spread_s": plain_spread,
            "keeping_s": keeping, "keeping_spread_s": keeping_spread, "keep_overhead_ratio": round(keeping / plain - 1, 3),
            "undo_s": undone, "undo_spread_s": undo_spread,
            "byte_for_byte": all(r["byte_for_byte"] for r in results),
            "undo_status": sorted({str(r["undo_status"]) for r in results}),
            "restored_paths": results[0]["restored"], "not_reversible": results[0]["not_reversible"]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    print(json.dumps(asyncio.run(main(parser.parse_args().rounds))))
