"""What chiffon's router adds to a llama.cpp completion, against calling it directly and through LiteLLM.

One ``llama_cpp.server`` serves a tiny random-weight GGUF (written with ``gguf``, no
download). The same short streamed chat completion (max_tokens 4, temperature 0, so
every call generates the same tokens) goes through three paths:

* direct: ``httpx`` POST /v1/chat/completions with ``stream: true``, read to ``[DONE]``;
* chiffon: :meth:`servers.llm.router.Router.chat` in-process (routing decision,
  breaker, priority gate, retry wrapper, SSE parsing, ledger entry in PostgreSQL);
* litellm: ``litellm.Router.acompletion(..., stream=True)`` in-process, read to the end.

Paths alternate call by call so machine noise hits all three alike; ``--n`` sequential
calls, then ``--n`` calls ``--concurrency`` at a time. Warm-up calls are not counted.
Prints one JSON line: p50/p95 latency per path in ms over all calls,
``overhead_p95_ms = chiffon_p95 - direct_p95`` and
``ratio_vs_litellm = (chiffon_p95 - direct_p95) / (litellm_p95 - direct_p95)``.
Targets: overhead_p95_ms <= 2 and ratio_vs_litellm <= 0.5.

    uv run --group test python benchmarks/router_overhead.py [--n 300] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from chiffon.servers.llm.router import Router  # noqa: E402
from chiffon.servers.llm.tiny_model import serve_tiny, write_tiny_llama  # noqa: E402
from chiffon.servers.llm.types import Hints, build_messages  # noqa: E402
from chiffon.shared.config import LLMSettings, load_settings  # noqa: E402
from chiffon.shared.runtime import open_runtime, stop_embedded  # noqa: E402

TARGET_OVERHEAD_MS = 2.0
TARGET_RATIO = 0.5
PROMPT = "Is the east host up?"
MAX_TOKENS = 4


def start_server(model: Path, port: int, slots: int) -> subprocess.Popen[bytes]:
    return serve_tiny(model, port, n_ctx=512, extra=("--interrupt_requests", "False"))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


async def bench(n: int, concurrency: int, port: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}"
    body = {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": MAX_TOKENS,
            "temperature": 0.0, "stream": True}
    direct_client = httpx.AsyncClient(base_url=url, timeout=60)

    async def direct() -> None:
        async with direct_client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    return
        raise RuntimeError("direct: no [DONE]")

    llm = LLMSettings.model_validate({
        "backends": {"bench": {"kind": "llamacpp", "url": url, "slots": concurrency, "max_queue": 1000}},
        "tiers": {"quick": {"backend": "bench", "model": "tiny", "context_window": 512}},
    })
    messages = build_messages(PROMPT, None)
    hints = Hints(caller="benchmark")

    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    lite = litellm.Router(model_list=[{"model_name": "tiny", "litellm_params": {
        "model": "openai/tiny", "api_base": f"{url}/v1", "api_key": "not-needed"}}])

    async def via_litellm() -> None:
        stream = await lite.acompletion(model="tiny", messages=body["messages"], max_tokens=MAX_TOKENS,
                                        temperature=0.0, stream=True)
        async for _ in stream:
            pass

    with tempfile.TemporaryDirectory(prefix="chiffon-bench-") as home:
        settings = load_settings(home=Path(home))
        try:
            async with open_runtime(settings) as rt:
                router = await Router.open(llm, store=rt.store)

                async def via_chiffon() -> None:
                    await router.chat(messages, hints, max_tokens=MAX_TOKENS, temperature=0.0)

                paths = {"direct": direct, "chiffon": via_chiffon, "litellm": via_litellm}
                times: dict[str, list[float]] = {k: [] for k in paths}

                async def timed(name: str) -> None:
                    start = time.perf_counter()
                    await paths[name]()
                    times[name].append((time.perf_counter() - start) * 1000)

                for _ in range(10):  # warm-up: connections, imports, first PostgreSQL write
                    for name in paths:
                        await paths[name]()
                for _ in range(n):
                    for name in paths:
                        await timed(name)
                for _ in range(max(1, n // concurrency)):
                    for name in paths:
                        await asyncio.gather(*(timed(name) for _ in range(concurrency)))
                await router.aclose()
        finally:
            await stop_embedded(settings)
    await direct_client.aclose()

    out: dict[str, float] = {}
    for name, values in times.items():
        out[f"{name}_p50_ms"] = round(pct(values, 50), 3)
        out[f"{name}_p95_ms"] = round(pct(values, 95), 3)
    chiffon_over = out["chiffon_p95_ms"] - out["direct_p95_ms"]
    lite_over = out["litellm_p95_ms"] - out["direct_p95_ms"]
    out["overhead_p95_ms"] = round(chiffon_over, 3)
    out["litellm_overhead_p95_ms"] = round(lite_over, 3)
    out["ratio_vs_litellm"] = round(chiffon_over / lite_over, 3) if lite_over > 0 else float("nan")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="calls per path, sequential and again concurrent")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--port", type=int, default=18931)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    with tempfile.TemporaryDirectory(prefix="chiffon-gguf-") as tmp:
        model = write_tiny_llama(Path(tmp) / "tiny.gguf")
        server = start_server(model, args.port, args.concurrency)
        try:
            result = asyncio.run(bench(args.n, args.concurrency, args.port))
        finally:
            server.kill()
            server.wait()
    result.update(n=args.n, concurrency=args.concurrency, target_overhead_p95_ms=TARGET_OVERHEAD_MS,
                  target_ratio_vs_litellm=TARGET_RATIO,
                  meets_targets=result["overhead_p95_ms"] <= TARGET_OVERHEAD_MS
                  and result["ratio_vs_litellm"] <= TARGET_RATIO)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
