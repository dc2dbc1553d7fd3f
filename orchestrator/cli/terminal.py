"""What a ``chiffon`` command asks the human at its terminal: passwords (no echo, held in memory only), a pick
between candidates retrieval cannot separate, and the one-time approval code. Nothing here is asked without a
terminal: a password prompt exits 2, a pick is skipped, the code is left to ``--code``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from chiffon.orchestrator.cli.common import EXIT_ERROR, err, out

if TYPE_CHECKING:
    from chiffon.shared.config import Settings

AskVaultOpt = Annotated[bool, typer.Option(
    "--ask-vault-pass", help="Type the ansible-vault password here (no echo); it is held in this process's memory "
                             "for the check and the run, never stored, logged or shown to a model.")]
AskBecomeOpt = Annotated[bool, typer.Option(
    "--ask-become-pass", help="Type the become (sudo) password here (no echo); held in memory like --ask-vault-pass.")]


def ask_passwords(vault: bool, become: bool) -> Any:
    """Ask for the vault and become passwords on the terminal (no echo, the prompt on the terminal, never
    on stdout); None when neither is wanted. Exits 2 without a terminal: nobody would type them."""
    if not (vault or become):
        return None
    import getpass

    from chiffon.servers.ansible.prompted import Typed

    if not sys.stdin.isatty():
        err.print("[bold red]error:[/] --ask-vault-pass / --ask-become-pass need a terminal to type the password "
                  "in, and there is none. Run the command in your own terminal, or use a password file "
                  "(--vault-password-file).", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR)
    return Typed(vault=getpass.getpass("Vault password: ") if vault else None,
                 become=getpass.getpass("BECOME password: ") if become else None)

def ask_code(settings: Settings, given: str | None) -> str | None:
    """The one-time code: ``given``, else asked on the terminal when TOTP is set up (else None)."""
    if given or settings.approvals.totp_secret is None or not sys.stdin.isatty():
        return given
    return str(typer.prompt("one-time code from your authenticator app"))

def pick_on_terminal(bar: Any) -> Any:
    """A ``pick`` for the planner: list the candidates retrieval cannot separate and ask which one (Enter: the
    first)."""

    async def pick(candidates: list[Any]) -> Any:
        bar.stop()
        out.print("[bold]Several playbooks fit this request equally; which one?[/]")
        for number, candidate in enumerate(candidates, 1):
            hosts = ",".join(candidate.unit.hosts) or "-"
            out.print(escape(f"  {number}. {candidate.unit.name}  (hosts {hosts}; {candidate.match.reason})"))
        while True:
            answer = str(await asyncio.to_thread(typer.prompt, "number", default="1")).strip()
            if answer.isdigit() and 1 <= int(answer) <= len(candidates):
                break
            out.print(f"type a number from 1 to {len(candidates)}")
        bar.start()
        return candidates[int(answer) - 1]

    return pick
