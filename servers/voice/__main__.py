"""``chiffon-voice``: run the voice MCP server on its own (stdio or HTTP)."""

from __future__ import annotations

import argparse

from chiffon.servers.voice.server import create_voice_server
from chiffon.servers.voice.service import open_voice
from chiffon.shared.config import Settings
from chiffon.shared.mcp import serve, server_main
from chiffon.shared.runtime import open_runtime


async def run(settings: Settings, args: argparse.Namespace) -> None:
    """Open the runtime and the router, serve ``chiffon-voice`` until interrupted."""
    from chiffon.servers.llm.router import open_router

    async with open_runtime(settings) as rt, open_router(rt) as router, open_voice(rt, router) as voice:
        await serve(create_voice_server(voice), settings, args.transport, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``chiffon-voice`` script."""
    server_main("chiffon-voice", __doc__, run, argv)


if __name__ == "__main__":
    main()
