"""``chiffon console``: the web console on :7860, and ``chiffon console passwd`` writing its operator accounts
into the user's config file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from chiffon.orchestrator.cli.common import EXIT_ERROR, ConfigOpt, err, out, run_or_exit, settings_or_exit
from chiffon.shared.errors import ChiffonError
from chiffon.shared.logs import setup_logging

if TYPE_CHECKING:
    from chiffon.shared.config import Settings

app = typer.Typer()
console_app = typer.Typer(help="The web console: plans, runs, audit, hosts, agents, voice.")
app.add_typer(console_app, name="console")


@console_app.callback(invoke_without_command=True)
def console_cmd(
    ctx: typer.Context,
    bind: Annotated[str | None, typer.Option(help="Bind address (default console.bind, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default console.port, 7860; 0: a free one, named by the "
                                                       "listening line).")] = None,
    repo: Annotated[Path | None, typer.Option(help="IaC repo that 'Request changes' plans against.")] = None,
    config: ConfigOpt = None,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Serve the web console (behind the operators' login; /health open). Needs the `console` extra."""
    if ctx.invoked_subcommand is not None:
        return
    setup_logging(verbose, part="console")
    settings = settings_or_exit(config)
    from chiffon.orchestrator.console.serve import require_operators, serve_console

    try:
        require_operators(settings)  # before Gradio loads (seconds): a fresh home learns at once what to do
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    import importlib.util

    if importlib.util.find_spec("gradio") is None:  # found, not loaded: serve_console loads it beside the store
        err.print("[bold red]error:[/] the console needs Gradio: install chiffon with the `console` extra "
                  "(uv tool install 'chiffon[console]', or uv sync --extra console)")
        raise typer.Exit(EXIT_ERROR) from None
    try:
        run_or_exit(serve_console(settings, bind or settings.console.bind,
                                  settings.console.port if port is None else port, repo))  # 0: a free port
    except KeyboardInterrupt:
        pass


@console_app.command("passwd")
def passwd_cmd(name: Annotated[str, typer.Argument(help="Operator login name (lower case, digits, . _ -).")],
               totp: Annotated[bool | None, typer.Option(
                   "--totp/--no-totp", help="When no TOTP secret is set up: make one now (default: ask on a "
                                            "terminal, skip without one).")] = None,
               print_entry: Annotated[bool, typer.Option(
                   "--print", help="Print the console.operators entry instead of writing it (for a config file "
                                   "you manage by hand, such as /etc/chiffon/chiffon.yaml).")] = False,
               config: ConfigOpt = None) -> None:
    """Set operator NAME's password (asked twice, never echoed; one line of stdin when it is not a terminal): the
    argon2id hash goes into console.operators of your config file (``chiffon config path`` names it; created
    0600), replacing an operator of the same name and keeping the others.

    When no ``approvals.totp_secret`` is set up, offers one (:func:`offer_totp`): a password alone proves only
    that someone knows it, and approvals are provable only with a one-time code.
    """
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
    if print_entry:
        sys.stdout.write(f"console:\n  operators:\n    - name: {name}\n      password_hash: '{hashed}'\n")
    else:
        _write_operator(name, hashed, config)
    offer_totp(settings_or_exit(config), name, totp)


def _write_operator(name: str, hashed: str, config: Path | None) -> None:
    """Put the operator into the user's config file and say where; warn when a later layer or the environment
    sets console.operators, so that this entry does not take effect."""
    from chiffon.shared.config.edit import overridden_by, upsert_operator, write_user_file
    from chiffon.shared.config.files import discover_layers

    replaced: list[bool] = []
    try:
        path = write_user_file(lambda data: replaced.append(upsert_operator(data, name, hashed)), config_file=config)
        above = overridden_by(("console", "operators"), discover_layers(config))
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    out.print(f"{'replaced' if replaced and replaced[0] else 'added'} operator {name} in {path} (mode 0600); "
              "start the console with `chiffon console`", highlight=False, markup=False, soft_wrap=True)
    if above:
        err.print(f"warning: console.operators is also set by {', '.join(above)}, which wins over {path}: "
                  f"{name} cannot log in until it is added there", highlight=False, markup=False, soft_wrap=True)


def offer_totp(settings: Settings, account: str, wanted: bool | None) -> None:
    """Make a TOTP secret for approvals when none is set up and ``wanted`` (None: ask on a terminal, skip without
    one). The secret and its ``otpauth://`` URI go to stderr only, never to a file (the user's config file, and
    the entry ``--print`` writes to stdout, are read by the invoking account, and so by its model): the operator
    puts the secret in the orchestrator's own 0600 env file."""
    if settings.approvals.totp_secret is not None or wanted is False:
        return
    if wanted is None:
        if not sys.stdin.isatty():
            return
        wanted = typer.confirm("No one-time code (TOTP) is set up, so approvals cannot prove a human. Make a "
                               "TOTP secret now?", default=True, err=True)
        if not wanted:
            return
    from chiffon.shared.totp import new_secret

    secret, uri = new_secret(account)
    err.print(f"TOTP secret: {secret}\nauthenticator URI (scan or paste; shown only now): {uri}\n"
              "Put CHIFFON_APPROVALS__TOTP_SECRET=<the secret> and CHIFFON_APPROVALS__REQUIRE_TOTP=true in the "
              "orchestrator's env file (mode 0600, owned by root or its service account, e.g. "
              "/etc/chiffon/chiffon.env), never in a file your own account can read; restart chiffon, and every "
              "approval then needs the current code.", highlight=False, soft_wrap=True)
