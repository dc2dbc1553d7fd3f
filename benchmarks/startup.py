"""How long chiffon makes an IDE and a terminal wait before anything happens.

Per round, interleaved so machine noise hits every measure alike:

* ``serve_tools_list_s``: spawn ``chiffon serve`` over stdio (as an IDE does for each window) until the
  answer to the first ``tools/list``;
* ``bare_tools_list_s``: the same for a bare FastMCP server with one tool (this script, ``--bare``): the floor
  that the MCP libraries themselves set on this machine;
* ``cli_help_s``: ``chiffon --help``;
* ``run_plan_s``: ``chiffon run "deploy redis" --json`` without approval, until it exits 3 with the plan
  (match, check mode with diff, plan stored; nothing runs).

A warm-up round (embedded PostgreSQL initdb, bytecode compilation, and the first ``chiffon serve``, which
composes the server before it answers and stores its tool declarations: later starts answer ``tools/list``
from them while they compose, see :mod:`chiffon.orchestrator.declared`) is not counted. Prints one JSON line:
medians in seconds, every round, and ``serve_vs_bare`` (the serve median over the bare one). Targets from
issue 17: ``serve_tools_list_s`` <= 2.0 and ``cli_help_s`` <= 0.5.

    uv run python benchmarks/startup.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
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
BIN = Path(sys.executable).parent
TARGETS = {"serve_tools_list_s": 2.0, "cli_help_s": 0.5}


def serve_bare() -> None:
    """A FastMCP server with one tool on stdio: the baseline."""
    from fastmcp import FastMCP

    mcp = FastMCP("bare")

    @mcp.tool
    def echo(text: str) -> str:
        """Return ``text``."""
        return text

    mcp.run(show_banner=False)


async def tools_list_s(command: str, args: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning ``command`` to the answer of its first ``tools/list``."""
    from fastmcp import Client
    from fastmcp.client.transports import StdioTransport

    started = time.perf_counter()
    async with Client(StdioTransport(command=command, args=args, env=env, keep_alive=False)) as client:
        await client.list_tools()
        return time.perf_counter() - started


def timed(cmd: list[str], env: dict[str, str], ok: tuple[int, ...] = (0,)) -> float:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        serve_bare()
        return
    work = Path(tempfile.mkdtemp(prefix="chiffon-startup-"))
    env = {**os.environ, "CHIFFON_HOME": str(work / "home"), "CHIFFON_EMBEDDED__IDLE_STOP_S": "0",
           "HOMELAB_ROOT": str(work / "targets"),
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    chiffon = str(BIN / "chiffon")
    runs: dict[str, list[float]] = {k: [] for k in ("serve_tools_list_s", "bare_tools_list_s", "cli_help_s",
                                                     "run_plan_s")}
    try:
        for i in range(args.rounds + 1):
            measured = {
                "serve_tools_list_s": asyncio.run(tools_list_s(chiffon, ["serve", "--repo", str(REPO)], env)),
                "bare_tools_list_s": asyncio.run(tools_list_s(sys.executable, [__file__, "--bare"], env)),
                "cli_help_s": timed([chiffon, "--help"], env),
                "run_plan_s": timed([chiffon, "run", "deploy redis", "--repo", str(REPO), "--json"], env, ok=(3,)),
            }
            if i:  # round 0 warms up
                for key, value in measured.items():
                    runs[key].append(value)
    finally:
        subprocess.run([chiffon, "down"], env=env, capture_output=True, check=False)  # this home's servers
    medians = {k: round(statistics.median(v), 3) for k, v in runs.items()}
    print(json.dumps({
        "benchmark": "startup", "rounds": args.rounds, **medians,
        "serve_vs_bare": round(medians["serve_tools_list_s"] / medians["bare_tools_list_s"], 2),
        "targets": TARGETS, "meets_targets": all(medians[k] <= v for k, v in TARGETS.items()),
        "all_s": {k: [round(x, 3) for x in v] for k, v in runs.items()},
    }))


if __name__ == "__main__":
    main()
