"""``chiffon console``: the web console on :7860, and ``chiffon console passwd`` for its operator accounts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from chiffon.orchestrator.cli.common import EXIT_ERROR, ConfigOpt, err, run_or_exit, settings_or_exit
from chiffon.shared.errors import ChiffonError
from chiffon.shared.logs import setup_logging

app = typer.Typer()
console_app = typer.Typer(help="The web console: plans, runs, audit, hosts, agents, voice.")
app.add_typer(console_app, name="console")


@console_app.callback(invoke_without_command=True)
def console_cmd(
    ctx: typer.Context,
    bind: Annotated[str | None, typer.Option(help="Bind address (default console.bind, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default console.port, 7860).")] = None,
    repo: Annotated[Path | None, typer.Option(help="IaC repo that 'Request changes' plans against.")] = None,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Serve the web console (behind the operators' login; /health open). Needs the `console` extra."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(verbose, part="console")
    settings = settings_or_exit(config)
    try:
        import gradio  # noqa: F401
    except ImportError:
        err.print("[bold red]error:[/] the console needs Gradio: install chiffon with the `console` extra "
                  "(uv tool install 'chiffon[console]', or uv sync --extra console)")
        raise typer.Exit(EXIT_ERROR) from None
    from chiffon.orchestrator.console.serve import serve_console

    try:
        run_or_exit(serve_console(settings, bind or settings.console.bind, port or settings.console.port, repo))
    except KeyboardInterrupt:
        pass


@console_app.command("passwd")
def passwd_cmd(name: Annotated[str, typer.Argument(help="Operator login name (lower case, digits, . _ -).")]) -> None:
    """Hash a password for operator NAME (asked twice, never echoed) and print the console.operators entry."""
    import re

    from chiffon.orchestrator.console.auth import hash_password

    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", name):
        err.print("[bold red]error:[/] NAME: use lower-case letters, digits, '.', '_' and '-'")
        raise typer.Exit(EXIT_ERROR)
    if sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        hashed = hash_password(password)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_ERROR) from None
    sys.stdout.write(f"console:\n  operators:\n    - name: {name}\n      password_hash: '{hashed}'\n")
