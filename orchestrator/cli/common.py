"""What every ``chiffon`` command module shares: exit codes, consoles, options, and the helpers that turn a
ChiffonError into one line and exit code 2. Imports nothing heavy: ``chiffon --help`` loads only this,
typer and rich; each command imports what it needs when it runs.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from chiffon.shared.errors import ChiffonError, InvalidInput

if TYPE_CHECKING:
    from chiffon.shared.config import Settings

EXIT_FAILED, EXIT_ERROR, EXIT_AWAITING, EXIT_REJECTED = 1, 2, 3, 4
EXIT_PARTIAL = 5  # the run applied, but what was asked for is not in place (servers.ansible.outcomes)


def run_exit_code(outcome: str | None, status: str) -> int:
    """The exit code of a finished run: 0 achieved, 5 partial, 1 failed or cancelled (``status`` for a run
    recorded before outcomes)."""
    if outcome is None:
        return 0 if status == "succeeded" else EXIT_FAILED
    return {"achieved": 0, "partial": EXIT_PARTIAL}.get(outcome, EXIT_FAILED)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C

out = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="A chiffon.yaml merged over the shipped, user and system files, instead of CHIFFON_CONFIG "
                     "(`chiffon config path` lists them).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def settings_or_exit(config: Path | None, **overrides: Any) -> Settings:
    """Load settings; a bad configuration is a one-line message (file, key, expected) and exit code 2."""
    from chiffon.shared.config import load_settings

    try:
        return load_settings(config, **overrides)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None


def run_or_exit(coro: Any, *, fast_loop: bool = False) -> Any:
    """Run a coroutine; a ChiffonError becomes a one-line message and exit code 2, Ctrl-C exit code 130 (the
    coroutine is cancelled first: what it runs stops at its next await).

    ``fast_loop``: run it on uvloop where it is installed (``chiffon worker``: the task queue drains about 1.2x
    faster than on the default loop, measured with ``benchmarks/queues.py``; pgqueuer's CLI does the same).
    """
    try:
        if fast_loop:
            try:
                import uvloop
            except ImportError:
                pass
            else:
                return uvloop.run(coro)
        return asyncio.run(coro)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:  # asyncio.run cancelled the work on Ctrl-C and it has wound down
        err.print("interrupted", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def parse_vars(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs as a dict, values kept as written. Raises InvalidInput for a pair without ``=``."""
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInput("--extra-var", f"{pair!r} is not KEY=VALUE")
        result[key.strip()] = value
    return result


def split_csv(csv: str | None) -> list[str] | None:
    """``a, b,,c`` -> ``["a", "b", "c"]``; None or empty -> None."""
    return [t.strip() for t in csv.split(",") if t.strip()] if csv else None


def parse_vars_or_exit(pairs: list[str]) -> dict[str, Any]:
    """:func:`parse_vars`, a bad pair being one line on stderr and exit code 2."""
    try:
        return parse_vars(pairs)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None


def progress_bar() -> Progress:
    """A transient progress bar on stderr (stdout stays for the result and --json)."""
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err, transient=True)


