"""The ``chiffon`` command line, one module per area, registered here explicitly.

- :mod:`~orchestrator.cli.infra`: run, approve, reject, execute, status, audit, serve
- :mod:`~orchestrator.cli.plans_cmd`: the plans, newest first, by status
- :mod:`~orchestrator.cli.drift`: drift of the hosts from the repo, and the plan that fixes a unit
- :mod:`~orchestrator.cli.undo`: the plan that puts back what a run changed
- :mod:`~orchestrator.cli.repo`: services, inventories
- :mod:`~orchestrator.cli.hosts`: host state, busy/free
- :mod:`~orchestrator.cli.tasks`: agent tasks, worker, inbox
- :mod:`~orchestrator.cli.memory`: vector memory
- :mod:`~orchestrator.cli.voice`: speech models, hostd
- :mod:`~orchestrator.cli.console`: the web console and its operator accounts
- :mod:`~orchestrator.cli.config_cmd`: config files (path, set, unset, get, show)
- :mod:`~orchestrator.cli.ops`: install, up/down, doctor, deploy kit, TOTP, tokens
- :mod:`~orchestrator.cli.state`: backup, restore, purge (retention)

Every module imports only :mod:`~orchestrator.cli.common` (and typer, rich); what a command needs
is imported when it runs, so ``chiffon --help`` stays fast.
"""

from __future__ import annotations

import typer

from chiffon.orchestrator.cli import (
    config_cmd,
    console,
    drift,
    hosts,
    infra,
    memory,
    ops,
    plans_cmd,
    repo,
    state,
    tasks,
    undo,
    voice,
)

app = typer.Typer(help="chiffon: homelab infrastructure in plain language, with a human in the loop.",
                  no_args_is_help=True, add_completion=False)
for _module in (infra, plans_cmd, drift, undo, hosts, memory, ops, state, repo, tasks, voice, console, config_cmd):
    app.add_typer(_module.app)


def main() -> None:
    """Console-script entry point."""
    app()
