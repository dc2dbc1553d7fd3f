"""Faults during a run: how fast the user is told, how fast state converges, and whether it does.

Each case (tests/faults/harness.py) runs on its own CHIFFON_HOME (embedded PostgreSQL and Redis), with a
playbook that pauses 5 s and then appends a line to a file (so a second application would show), and
SIGKILLs one part about 1 s into Ansible:

* ``postgres``, ``redis``: the embedded server under `chiffon execute PLAN`;
* ``cli``: `chiffon execute` itself;
* ``worker``: the `chiffon worker` running the plan for a waiting `chiffon execute`; a second worker starts
  5 s later (systemd's RestartSec);
* ``ctrl-c``: SIGINT to `chiffon execute`, as a terminal sends it.

``detect_s``: from the kill to the client's first error line (or, when it answers on stdout only, its exit);
``null`` for ``cli``, the client being what was killed. ``exit_s``: from the kill or SIGINT to the client's
exit (``ctrl_c_exit_s``: the ``ctrl-c`` case's; target 2 s). ``reconcile_s``: `chiffon status PLAN` (which brings
the store back and records what a stopped run left) until it returns. A case ``converged`` when plan, run and
audit agree afterwards, the audit holds one run record, and the file was written at most once. Prints one
JSON line: ``{"cases":..,"converged":..,"max_detect_s":..,"max_reconcile_s":..,"ctrl_c_exit_s":..,
"by_case":{...}}``. Issue 19's targets: a clear message within 10 s, Ctrl-C stops within 2 s.

    uv run --group test python benchmarks/faults.py [--cases postgres,redis,cli,worker]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.shared.runtime import stop_embedded  # noqa: E402
from tests.faults.harness import CASES, approved_plan, converged, inject, make_lab  # noqa: E402

TARGET_DETECT_S = 10.0
TARGET_CTRL_C_S = 2.0


async def run_case(case: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"chiffon-bench-faults-{case}-") as tmp:
        lab = make_lab(Path(tmp))
        try:
            plan_id = await approved_plan(lab)
            fault = await asyncio.to_thread(inject, case, lab, plan_id)
            state = await converged(lab, plan_id)
        finally:
            await stop_embedded(lab.settings)
    return {"exit_code": fault.exit_code, "detect_s": None if fault.detect_s is None else round(fault.detect_s, 3),
            "exit_s": None if fault.exit_s is None else round(fault.exit_s, 3),
            "reconcile_s": state["reconcile_s"], "status": state["status"], "applied": state["applied"],
            "converged": state["converged"]}


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES))
    cases = parser.parse_args().cases.split(",")
    by_case = {}
    for case in cases:
        by_case[case] = await run_case(case)
        print(f"{case}: {by_case[case]}", file=sys.stderr)
    detected = [c["detect_s"] for c in by_case.values() if c["detect_s"] is not None]
    return {"cases": len(by_case), "converged": sum(c["converged"] for c in by_case.values()),
            "max_detect_s": max(detected, default=None),
            "max_reconcile_s": max(c["reconcile_s"] for c in by_case.values()),
            "ctrl_c_exit_s": by_case.get("ctrl-c", {}).get("exit_s"), "by_case": by_case,
            "targets_met": all(c["converged"] for c in by_case.values())
            and all(d <= TARGET_DETECT_S for d in detected)
            and (by_case.get("ctrl-c", {}).get("exit_s") or 0) <= TARGET_CTRL_C_S}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
