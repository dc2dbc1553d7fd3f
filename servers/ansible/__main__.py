"""``chiffon-ansible``: run the Ansible MCP server on its own (stdio or HTTP)."""

from __future__ import annotations

import argparse
from pathlib import Path

from chiffon.servers.ansible.dispatch import running_worker
from chiffon.servers.ansible.server import create_ansible_server
from chiffon.servers.ansible.service import AnsibleService
from chiffon.shared.config import Settings
from chiffon.shared.mcp import serve, server_main
from chiffon.shared.runtime import open_runtime


async def run(settings: Settings, args: argparse.Namespace) -> None:
    """Open the runtime and serve ``chiffon-ansible`` over ``args.repo`` until interrupted; with
    ``worker_in_process`` (the default) an infra worker runs the approved plans in this process."""
    async with open_runtime(settings) as rt:
        svc = AnsibleService.for_runtime(rt, args.repo)
        async with running_worker(svc, settings.worker_in_process):
            await serve(create_ansible_server(svc), settings, args.transport, args.host, args.port)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``chiffon-ansible`` script."""
    def add_repo(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--repo", type=Path, help="IaC repo (default: CHIFFON_REPO or the `repo` key)")

    server_main("chiffon-ansible", __doc__ or "", run, argv, add_repo)


if __name__ == "__main__":
    main()
