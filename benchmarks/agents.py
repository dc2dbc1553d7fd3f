"""Concurrent role agents and the task queue's throughput, against raw Redis Streams in the same run.

Part 1, agents: 10 then 20 tasks at once, each a 3-step agent (a role with
``max_steps: 3`` and the repo.read tools) on the tiny random-weight llama.cpp
model behind the router, through the real queue, an in-process worker running
that many tasks at once, scoped tool dispatch and ``agent_state`` writes. A
step is one model reply plus its tool call (or the final answer); its time is
``step_s`` as the agent records it, which includes waiting for the model's slot.

Part 2, queue: a burst of ``--burst`` no-op tasks submitted in batches of 32
(``submit_many``: one INSERT, then one Lua call that adds the 32 entries) while
an in-process worker with 32 slots drains them (one Lua read per batch; rows
group-committed: one UPDATE and one publish-and-ack call per flush), against the
same count through bare Redis Streams on one stream and one consumer group: XADD
pipelined 32 at a time, XREADGROUP COUNT 32, one XACK per batch. ``--rounds``
raw and queue bursts run interleaved and their medians are compared:
``queue_ratio = queue_tasks_per_s / raw_tasks_per_s``. ``lost`` and
``duplicates`` add up over every round.

Prints one JSON line. Targets: p95_step_s < 6 for both sizes, error_rate < 0.01,
lost 0, duplicates 0, queue_ratio >= 0.5.

    uv run python benchmarks/agents.py [--burst 2000] [--rounds 3] [--sizes 10 20]
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
from chiffon.servers.tasks.queue import TaskQueue  # noqa: E402
from chiffon.servers.tasks.roles import Role  # noqa: E402
from chiffon.servers.tasks.service import open_team, running_task_worker  # noqa: E402
from chiffon.servers.tasks.worker import TaskWorker  # noqa: E402
from chiffon.shared.config import LLMSettings, TaskSettings, load_settings  # noqa: E402
from chiffon.shared.runtime import Runtime, open_runtime, stop_embedded  # noqa: E402

TARGET_P95_STEP_S = 6.0
TARGET_ERROR_RATE = 0.01
TARGET_QUEUE_RATIO = 0.5
BATCH = 32  # tasks in flight in both queue paths
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
            queue = TaskQueue(rt, roles)
            tasks = [await queue.submit(BENCH_ROLE.name, f"Describe repository number {i}", {"repo": str(repo)})
                     for i in range(size)]
            done = [await queue.wait(t.id, 600) for t in tasks]
    steps = await rt.store.pool.fetch(
        "SELECT (content->>'step_s')::float AS s FROM agent_state WHERE task_id = ANY($1::text[]) "
        "AND kind IN ('tool_result', 'error', 'denied', 'final') AND content ? 'step_s'", [t.id for t in tasks])
    return [r["s"] for r in steps], sum(1 for t in done if t.status != "succeeded")


async def queue_burst(rt: Runtime, n: int) -> tuple[float, int, int]:
    """Seconds for ``n`` no-op tasks through the chiffon queue; (seconds, lost, duplicates)."""
    queue = TaskQueue(rt)
    worker = TaskWorker(rt, {}, ["noop"], name="bench-noop", concurrency=BATCH)
    runner = asyncio.create_task(worker.run_forever())
    await asyncio.sleep(0.2)  # groups exist
    started = time.perf_counter()
    ids: list[str] = []
    for first in range(0, n, BATCH):
        specs = [queue.spec("noop", f"noop {i}", kind="noop") for i in range(first, min(n, first + BATCH))]
        ids += [t.id for t in await queue.submit_many(specs)]
    while worker.handled < n and time.perf_counter() - started < 600:  # noqa: ASYNC110 (a counter, no event)
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    runner.cancel()
    await worker.close()
    rows = await rt.store.pool.fetch("SELECT status, completions FROM agent_tasks WHERE id = ANY($1::text[])", ids)
    lost = sum(1 for r in rows if r["status"] != "succeeded") + (n - len(rows))
    duplicates = sum(max(0, r["completions"] - 1) for r in rows)
    return elapsed, lost, duplicates


async def raw_burst(rt: Runtime, n: int) -> float:
    """Seconds for ``n`` entries through bare XADD / XREADGROUP / XACK, consumed while produced."""
    redis, stream, group = rt.bus.redis, "bench:raw", "bench"
    await redis.delete(stream)
    await redis.xgroup_create(stream, group, id="0", mkstream=True)
    acked = 0

    async def consume() -> None:
        nonlocal acked
        while acked < n:
            reply = await redis.xreadgroup(group, "c1", {stream: ">"}, count=BATCH, block=100)
            for _, entries in reply or []:
                ids = [entry_id for entry_id, fields in entries if json.loads(fields["data"])]
                await redis.xack(stream, group, *ids)
                acked += len(ids)

    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    for first in range(0, n, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(first, min(n, first + BATCH)):
                pipe.xadd(stream, {"data": json.dumps({"task_id": f"raw-{i}"})})
            await pipe.execute()
    await consumer
    elapsed = time.perf_counter() - started
    await redis.delete(stream)
    return elapsed


async def main(burst: int, sizes: list[int], rounds: int) -> dict[str, object]:
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
                raw_runs, queue_runs, lost, duplicates = [], [], 0, 0
                for _ in range(rounds):  # interleaved, so that a noisy moment on a shared machine hits both
                    raw_runs.append(await raw_burst(rt, burst))
                    seconds, round_lost, round_duplicates = await queue_burst(rt, burst)
                    queue_runs.append(seconds)
                    lost += round_lost
                    duplicates += round_duplicates
                raw_s, queue_s = statistics.median(raw_runs), statistics.median(queue_runs)
                result.update({
                    "p95_step_s": p95s, "steps": steps_total, "error_rate": round(failed / total, 4), "lost": lost,
                    "duplicates": duplicates, "burst": burst, "rounds": rounds,
                    "queue_tasks_per_s": round(burst / queue_s, 1), "raw_tasks_per_s": round(burst / raw_s, 1),
                    "queue_ratio": round(raw_s / queue_s, 3),
                })
        finally:
            llama.kill()
            await stop_embedded(settings)
    result["targets_met"] = (all(p < TARGET_P95_STEP_S for p in result["p95_step_s"])  # type: ignore[attr-defined]
                             and result["error_rate"] < TARGET_ERROR_RATE and result["lost"] == 0  # type: ignore[operator]
                             and result["duplicates"] == 0 and result["queue_ratio"] >= TARGET_QUEUE_RATIO)  # type: ignore[operator]
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=2000, help="No-op tasks in the queue burst.")
    parser.add_argument("--rounds", type=int, default=3, help="Raw and queue bursts, interleaved; medians compared.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20], help="Concurrent agents per round.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(main(args.burst, args.sizes, args.rounds))))
