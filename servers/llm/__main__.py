"""``chiffon-llm``: run the LLM routing MCP server on its own (stdio or HTTP)."""

from __future__ import annotations

import argparse

from chiffon.servers.llm.router import open_router
from chiffon.servers.llm.server import create_llm_server
from chiffon.shared.config import Settings
from chiffon.shared.mcp import serve, server_main
from chiffon.shared.runtime import open_runtime


async def run(settings: Settings, args: argparse.Namespace) -> None:
    """Open the runtime and the router, serve ``chiffon-llm`` until interrupted."""
    async with open_runtime(settings) as rt, open_router(rt) as router:
        await serve(create_llm_server(router), settings, args.transport, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``chiffon-llm`` script."""
    server_main("chiffon-llm", __doc__, run, argv)


if __name__ == "__main__":
    main()
