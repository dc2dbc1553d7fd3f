"""``chiffon-ansible``: run the Ansible MCP server on its own (stdio or HTTP)."""

from __future__ import annotations

import argparse
from pathlib import Path

from servers.ansible.server import create_ansible_server
from servers.ansible.service import AnsibleService
from shared.config import Settings
from shared.mcp import serve, server_main
from shared.runtime import open_runtime


async def run(settings: Settings, args: argparse.Namespace) -> None:
    """Open the runtime and serve ``chiffon-ansible`` over ``args.repo`` until interrupted."""
    async with open_runtime(settings) as rt:
        server = create_ansible_server(AnsibleService.for_runtime(rt, args.repo))
        await serve(server, settings, args.transport, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``chiffon-ansible`` script."""
    server_main("chiffon-ansible", __doc__, run, argv, lambda p: p.add_argument(
        "--repo", type=Path, help="IaC repo (default: CHIFFON_REPO or the bundled example)"))


if __name__ == "__main__":
    main()
