"""Operating chiffon: ``chiffon install`` (IDE clients), ``chiffon deploy systemd``, ``chiffon backup|restore``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from orchestrator.cli import ConfigOpt, JsonOpt, _run, _settings, app, err, out
from shared.errors import ChiffonError
from shared.logs import setup_logging


@app.command("install")
def install_cmd(
    client: Annotated[str, typer.Argument(help="claude-desktop, claude-code, cursor, vscode, trae or antigravity.")],
    print_only: Annotated[bool, typer.Option("--print", help="Show the merged config; write nothing.")] = False,
    path: Annotated[Optional[Path], typer.Option(help="The client's config file (default: where the client reads it).")] = None,
) -> None:
    """Add chiffon's MCP server to an IDE client's config (other servers kept, a backup first)."""
    setup_logging()
    from orchestrator.clients import install

    try:
        target, config, backup = install(client, path=path, dry_run=print_only)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if print_only:
        sys.stdout.write(json.dumps(config, indent=2) + "\n")
        return
    err.print(f"wrote {target}" + (f" (backup: {backup})" if backup else "") + f"; restart {client} to load chiffon")


deploy_app = typer.Typer(help="Deploy kit: systemd units for the homelab's hosts.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("systemd")
def deploy_systemd(
    host: Annotated[str, typer.Option(help="Host name from the config's hosts (ai, desktop, east...).")],
    out: Annotated[Optional[Path], typer.Option(help="Write the units here (e.g. /etc/systemd/system); default: print.")] = None,
    install_dir: Annotated[Path, typer.Option(help="Where chiffon is installed (its .venv inside).")] = Path("/opt/chiffon"),
    home: Annotated[Path, typer.Option(help="CHIFFON_HOME of the services.")] = Path("/var/lib/chiffon"),
    user: Annotated[str, typer.Option(help="Unprivileged user the services run as.")] = "chiffon",
    config: ConfigOpt = None,
) -> None:
    """Generate the systemd units of HOST's chiffon services (restart on failure, non-root, env file for secrets)."""
    setup_logging()
    from orchestrator.deploy import systemd_units

    try:
        units = systemd_units(_settings(config), host, install_dir=install_dir, home=home, user=user)
    except ChiffonError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if out is None:
        for name, text in units.items():
            sys.stdout.write(f"### {name}\n{text}\n")
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        (out / name).write_text(text)
    err.print(f"wrote {', '.join(units) or 'nothing (no chiffon services for this host)'} to {out}")



@app.command("backup")
def backup_cmd(
    dest: Annotated[Optional[Path], typer.Option(help="Parent folder (default CHIFFON_HOME/backups).")] = None,
    keep_days: Annotated[int, typer.Option(min=1, help="Delete backups older than this many days.")] = 7,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Back up the state: pg_dump, a ChromaDB snapshot and a git bundle of the audit repo, in a dated folder."""
    setup_logging()
    from orchestrator.backup import backup
    from shared.store import Store

    settings = _settings(config)

    async def go() -> Any:
        secret = settings.database_url.get_secret_value() if settings.database_url else None
        store = await Store.open(secret, settings.home, max_size=1)
        try:
            return await asyncio.to_thread(backup, settings, store.url, dest, keep_days)
        finally:
            await store.close()

    manifest = _run(go())
    if as_json:
        out.print_json(json.dumps(manifest))
    else:
        out.print(f"backup in {manifest['folder']}: {', '.join(manifest['parts'])}"
                  + (f"; deleted {', '.join(manifest['deleted'])}" if manifest["deleted"] else ""))


@app.command("restore")
def restore_cmd(
    folder: Annotated[Path, typer.Argument(help="A folder `chiffon backup` wrote.")],
    force: Annotated[bool, typer.Option(help="Replace the state already in CHIFFON_HOME.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Restore a backup into CHIFFON_HOME (refused when it already holds state, unless --force)."""
    setup_logging()
    from orchestrator.backup import check_restorable, restore_db, restore_files
    from shared.store import Store

    settings = _settings(config)

    async def go() -> None:
        manifest = check_restorable(settings, folder, force)
        await asyncio.to_thread(restore_files, settings, folder, manifest)
        secret = settings.database_url.get_secret_value() if settings.database_url else None
        store = await Store.open(secret, settings.home, max_size=1)
        try:
            await asyncio.to_thread(restore_db, folder, store.url)
        finally:
            await store.close()

    _run(go())
    out.print(f"restored {folder} into {settings.home}")
