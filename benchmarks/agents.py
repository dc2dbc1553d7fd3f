"""Concurrent role agents: 10 then 20 tasks at once, each a 3-step agent, through the real queue.

Each task is a 3-step agent (a role with ``max_steps: 3`` and the repo.read
tools) on the tiny random-weight llama.cpp model behind the router, through the
real queue, an in-process worker running that many tasks at once, scoped tool
dispatch and ``queue_steps`` writes. A step is one model reply plus its tool
call (or the final answer); its time is ``step_s`` as the agent records it,
which includes waiting for the model's slot. The queue's own throughput and
recovery, against its peers and bare Redis Streams, is ``benchmarks/queues.py``.

Prints one JSON line. Targets: p95_step_s < 6 for both sizes, error_rate < 0.01.

    uv run python benchmarks/agents.py [--sizes 10 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.servers.llm.router import Router  # noqa: E402
from chiffon.servers.llm.tiny_model import serve_tiny, write_tiny_llama  # noqa: E402
from chiffon.servers.tasks.roles import Role  # noqa: E402
from chiffon.servers.tasks.service import agent_checks, open_team, running_task_worker  # noqa: E402
from chiffon.shared.config import LLMSettings, TaskSettings, load_settings  # noqa: E402
from chiffon.shared.queue import TaskQueue  # noqa: E402
from chiffon.shared.runtime import Runtime, open_runtime, stop_embedded  # noqa: E402

TARGET_P95_STEP_S = 6.0
TARGET_ERROR_RATE = 0.01
BENCH_ROLE = Role(name="bench-agent", title="Benchmark agent", description="Three steps over a small repo.",
                  scopes=("repo.read",), tier="quick", max_steps=3, max_tokens=3000,
                  prompt="You look around the repository you are given and report what it contains, briefly.")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[94] if len(values) > 1 else values[0]


def small_repo(root: Path) -> Path:
    repo = root / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# demo\nA service that adds numbers.\n")
    (repo / "app.py").write_text("def add(a, b):\n    return a + b\n")
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b",
           "PATH": "/usr/bin:/bin"}
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-q", "-m", "demo"], check=True, env=env)
    return repo


async def agents_round(rt: Runtime, router: Router, size: int, repo: Path) -> tuple[list[float], int]:
    """``size`` bench tasks at once; returns every step's seconds and the number of failed tasks."""
    roles = {BENCH_ROLE.name: BENCH_ROLE}
    async with open_team(rt, roles, router) as team:
        team.roles = roles
        async with running_task_worker(rt, team, [BENCH_ROLE.name], concurrency=size):
            queue = TaskQueue(rt, checks=agent_checks(roles))
            tasks = [await queue.submit(BENCH_ROLE.name, f"Describe repository number {i}", {"repo": str(repo)})
                     for i in range(size)]
            done = [await queue.wait(t.id, 600) for t in tasks]
    steps = await rt.store.pool.fetch(
        "SELECT (content->>'step_s')::float AS s FROM queue_steps WHERE task_id = ANY($1::text[]) "
        "AND kind IN ('tool_result', 'error', 'denied', 'final') AND content ? 'step_s'", [t.id for t in tasks])
    return [r["s"] for r in steps], sum(1 for t in done if t.status != "succeeded")


async def main(sizes: list[int]) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="chiffon-bench-agents-") as tmp:
        root = Path(tmp)
        model = write_tiny_llama(root / "tiny.gguf", seed=0)
        port = 18000 + int(time.time()) % 1000
        llama = serve_tiny(model, port, n_ctx=4096)
        settings = load_settings(home=root / "home")
        settings = settings.model_copy(update={"tasks": TaskSettings(grammar_max_chars=60, tool_result_chars=300)})
        llm = LLMSettings.model_validate({
            "backends": {"tiny": {"kind": "llamacpp", "url": f"http://127.0.0.1:{port}", "slots": 1,
                                  "max_queue": 1000, "timeout_s": 120}},
            "tiers": {"quick": {"backend": "tiny", "model": "tiny", "context_window": 4096}},
        })
        repo = small_repo(root)
        result: dict[str, object] = {"agents": sizes}
        try:
            async with open_runtime(settings) as rt:
                router = await Router.open(llm, store=rt.store)
                p95s, steps_total, failed, total = [], 0, 0, 0
                for size in sizes:
                    steps, bad = await agents_round(rt, router, size, repo)
                    p95s.append(round(p95(steps), 3))
                    steps_total += len(steps)
                    failed += bad
                    total += size
                await router.aclose()
                result.update({"p95_step_s": p95s, "steps": steps_total, "error_rate": round(failed / total, 4)})
        finally:
            llama.kill()
            await stop_embedded(settings)
    result["targets_met"] = (all(p < TARGET_P95_STEP_S for p in result["p95_step_s"])  # type: ignore[attr-defined]
                             and result["error_rate"] < TARGET_ERROR_RATE)  # type: ignore[operator]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20], help="Concurrent agents per round.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(main(args.sizes))))
