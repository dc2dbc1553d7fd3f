"""``chiffon-memory``: run the memory MCP server on its own (stdio or HTTP)."""

from __future__ import annotations

import argparse

from chiffon.servers.memory.server import create_memory_server
from chiffon.servers.memory.service import open_memory
from chiffon.shared.config import Settings
from chiffon.shared.mcp import serve, server_main
from chiffon.shared.runtime import open_runtime


async def run(settings: Settings, args: argparse.Namespace) -> None:
    """Open the runtime and Chroma, serve ``chiffon-memory`` until interrupted."""
    async with open_runtime(settings) as rt, open_memory(rt) as memory:
        await serve(create_memory_server(memory), settings, args.transport, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``chiffon-memory`` script."""
    server_main("chiffon-memory", __doc__, run, argv)


if __name__ == "__main__":
    main()
