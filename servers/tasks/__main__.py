"""``chiffon-tasks``: run the agent tasks MCP server on its own (stdio or HTTP).

With ``worker_in_process`` (the default) it also runs a worker for every role;
otherwise start workers with ``chiffon worker``.
"""

from __future__ import annotations

import argparse

from servers.llm.router import open_router
from servers.memory.service import open_memory
from servers.tasks.server import create_tasks_server
from servers.tasks.service import open_tasks
from shared.config import Settings
from shared.mcp import serve, server_main
from shared.runtime import open_runtime


async def run(settings: Settings, args: argparse.Namespace) -> None:
    """Open the runtime, router, memory and queue; serve ``chiffon-tasks`` until interrupted."""
    async with open_runtime(settings) as rt, open_router(rt) as router, open_memory(rt) as memory, \
            open_tasks(rt, router, memory) as tasks:
        await serve(create_tasks_server(tasks), settings, args.transport, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``chiffon-tasks`` script."""
    server_main("chiffon-tasks", __doc__, run, argv)


if __name__ == "__main__":
    main()
