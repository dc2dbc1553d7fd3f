"""``chiffon-llm``: run the LLM routing MCP server on its own (stdio or HTTP)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from servers.llm.router import open_router
from servers.llm.server import create_llm_server
from shared.config import Settings, load_settings
from shared.errors import ChiffonError
from shared.logs import setup_logging
from shared.mcp import serve as serve_transport
from shared.runtime import open_runtime


async def serve(settings: Settings, transport: str, host: str | None, port: int | None) -> None:
    """Open the runtime and the router, serve ``chiffon-llm`` until interrupted."""
    async with open_runtime(settings) as rt, open_router(rt) as router:
        await serve_transport(create_llm_server(router), settings, transport, host, port)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Parse flags, set up logging (stderr), build settings and serve."""
    parser = argparse.ArgumentParser(prog="chiffon-llm", description=__doc__)
    parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    parser.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8765)")
    parser.add_argument("--config", type=Path, help="chiffon.yaml (default: CHIFFON_CONFIG or deploy/config)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        settings = load_settings(args.config)
        asyncio.run(serve(settings, args.transport, args.host, args.port))
    except ChiffonError as exc:
        sys.stderr.write(f"chiffon-llm: {exc}\n")
        raise SystemExit(2) from exc
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
