"""How much context each toolset costs an IDE: the size of ``tools/list`` from ``chiffon serve --toolsets X``.

Starts ``chiffon serve`` over stdio once per toolset (the orchestrator's own tools alone, each server's tools
added alone, the default ``ansible,memory``, and ``all``), lists the tools with a real MCP client and prints one
JSON line: ``{"toolsets": {name: {"tools": count, "chars": characters of the tools/list JSON}},
"default_vs_all": chars(default) / chars(all)}``. Sizes do not depend on the machine; one run is enough.

    uv run python benchmarks/toolsets.py
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from fastmcp import Client
from fastmcp.client.transports import StdioTransport

ROOT = Path(__file__).resolve().parents[1]
CHIFFON = Path(sys.executable).parent / "chiffon"
CASES = {"none": "none", "default": None, "ansible": "ansible", "memory": "memory", "llm": "llm", "voice": "voice", "tasks": "tasks",
         "all": "all"}


async def listing(env: dict[str, str], toolsets: str | None) -> dict[str, int]:
    args = ["serve", "--repo", str(ROOT / "examples" / "homelab-infra")]
    if toolsets is not None:
        args += ["--toolsets", toolsets]
    async with Client(StdioTransport(command=str(CHIFFON), args=args, env=env, cwd=str(ROOT))) as client:
        tools = await client.list_tools()
    text = json.dumps([t.model_dump(mode="json", exclude_none=True) for t in tools])
    return {"tools": len(tools), "chars": len(text)}


async def main() -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="chiffon-bench-toolsets-") as tmp:
        env = {**os.environ, "CHIFFON_HOME": str(Path(tmp) / "home"), "CHIFFON_EMBEDDED__IDLE_STOP_S": "0"}
        try:
            sizes = {name: await listing(env, value) for name, value in CASES.items()}
        finally:
            await (await asyncio.create_subprocess_exec(str(CHIFFON), "down", "--all", "--under", tmp, env=env,
                                                        stdout=asyncio.subprocess.DEVNULL)).wait()
    return {"toolsets": sizes, "default_vs_all": round(sizes["default"]["chars"] / sizes["all"]["chars"], 3)}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))
