"""chiffon's own state: ``chiffon backup|restore`` and ``chiffon purge`` (the retention job).

``backup`` and ``purge`` are what the timers of ``chiffon deploy systemd`` run; each records its run
(:mod:`orchestrator.housekeeping`) so ``chiffon doctor`` can tell when it last ran."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from chiffon.orchestrator.cli.common import ConfigOpt, JsonOpt, err, out, run_or_exit, settings_or_exit
from chiffon.shared.logs import setup_logging

if TYPE_CHECKING:
    from chiffon.shared.config import Settings
    from chiffon.shared.store import Store

app = typer.Typer()


@asynccontextmanager
async def _store(settings: Settings) -> AsyncIterator[Store]:
    """The store alone (one connection): these commands need neither the bus nor the audit repo's lock."""
    from chiffon.shared.runtime import make_private
    from chiffon.shared.store import Store

    make_private(settings)  # umask 077: backups and restored state are the owner's alone
    secret = settings.database_url.get_secret_value() if settings.database_url else None
    store = await Store.open(secret, settings.home, max_size=1)
    try:
        yield store
    finally:
        await store.close()


@app.command("backup")
def backup_cmd(
    dest: Annotated[Path | None, typer.Option(help="Parent folder (default: backup.dest, else "
                                                   "CHIFFON_HOME/backups).")] = None,
    keep_days: Annotated[int | None, typer.Option(min=1, help="Delete backups older than this many days "
                                                              "(default: backup.keep_days, 7).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Back up the state: pg_dump, ChromaDB (a snapshot, or an export through a Chroma server's API) and a git
    bundle of the audit repo, in a dated folder."""
    setup_logging()
    from chiffon.orchestrator.backup import backup
    from chiffon.orchestrator.housekeeping import record_job
    settings = settings_or_exit(config)

    async def go() -> Any:
        async with _store(settings) as store:
            started = time.monotonic()
            try:
                manifest = await asyncio.to_thread(backup, settings, store.url, dest or settings.backup.dest,
                                                   keep_days or settings.backup.keep_days)
            except BaseException as exc:
                try:
                    await record_job(store, "backup", False, {"error": f"{type(exc).__name__}: {exc}"[:500]})
                except Exception:  # the store may be what failed; the backup's error is the one to show
                    pass
                raise
            manifest["seconds"] = round(time.monotonic() - started, 2)
            await record_job(store, "backup", True, {"folder": manifest["folder"], "seconds": manifest["seconds"]})
            return manifest

    manifest = run_or_exit(go())
    if as_json:
        out.print_json(json.dumps(manifest))
    else:
        out.print(escape(f"backup in {manifest['folder']} ({manifest['seconds']} s): {', '.join(manifest['parts'])}"
                         + (f"; deleted {', '.join(manifest['deleted'])}" if manifest["deleted"] else "")),
                  soft_wrap=True)


@app.command("restore")
def restore_cmd(
    folder: Annotated[Path, typer.Argument(help="A folder `chiffon backup` wrote.")],
    force: Annotated[bool, typer.Option(help="Replace the state already in CHIFFON_HOME (backed up first).")] = False,
    key: Annotated[Path | None, typer.Option(help="The backup key the folder was signed with (the old home's "
                                                  "keys/backup.key; default: this home's). A home without a key "
                                                  "keeps this one for its own backups.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Restore a backup into CHIFFON_HOME (refused when it already holds state, unless --force, which first backs
    up what it replaces). With a Chroma server configured, the collections are written back through its API.

    The folder is copied into the home first and the copy checked against its signed manifest (every file's
    SHA-256, HMAC-SHA256 with the backup key): a changed, planted or missing file, a path out of the folder or an
    edited manifest is refused before anything changes."""
    setup_logging()
    import shutil
    import tempfile

    from chiffon.orchestrator import backup_sign
    from chiffon.orchestrator.backup import backup, check_restorable, restore_db, restore_files
    from chiffon.shared.errors import InvalidInput
    from chiffon.shared.runtime import make_private
    settings = settings_or_exit(config)

    async def go() -> str | None:
        make_private(settings)
        with tempfile.TemporaryDirectory(prefix=".restore-", dir=settings.home) as tmp:
            staged = Path(tmp) / "backup"  # a private copy: nobody can change it between the check and the use
            if not (folder / "manifest.json").is_file():
                raise InvalidInput("folder", f"{folder} is not a chiffon backup (no manifest.json)")
            try:
                await asyncio.to_thread(shutil.copytree, folder, staged, symlinks=True)
            except (OSError, shutil.Error) as exc:
                raise InvalidInput("folder", f"cannot copy {folder}: {exc}") from exc
            manifest = await asyncio.to_thread(check_restorable, settings, staged, force, key)
            if key is not None and not backup_sign.key_path(settings.home).exists():
                backup_sign.install_key(settings.home, backup_sign.load_key(key))
            async with _store(settings) as store:
                saved = None
                if force:  # what --force replaces is backed up first, so a wrong restore can be undone
                    saved = (await asyncio.to_thread(backup, settings, store.url, None, 3650))["folder"]
                await asyncio.to_thread(restore_files, settings, staged, manifest)
                await asyncio.to_thread(restore_db, staged, store.url)
                return saved

    saved = run_or_exit(go())
    out.print(escape(f"restored {folder} into {settings.home}"
                     + (f"; what it replaced is backed up in {saved}" if saved else "")), soft_wrap=True)


@app.command("purge")
def purge_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Delete what retention says has aged out: chat history (memory.retention_days), ansible-runner folders of
    finished runs (retention.run_artifacts_days) and spoken replies (retention.speech_days). The daily timer of
    `chiffon deploy systemd` runs this."""
    setup_logging()
    from chiffon.orchestrator.housekeeping import as_detail, purge, record_job
    settings = settings_or_exit(config)

    async def go() -> dict[str, Any]:
        async with _store(settings) as store:
            done = await purge(store, runs_dir=settings.runs_dir, voice_dir=settings.home / "voice",
                               chat_days=settings.memory.retention_days,
                               run_artifacts_days=settings.retention.run_artifacts_days,
                               speech_days=settings.retention.speech_days, dry_run=dry_run)
            detail = as_detail(done)
            if not dry_run:
                await record_job(store, "purge", True, detail)
            return detail

    detail = run_or_exit(go())
    if as_json:
        out.print_json(json.dumps(detail))
        return
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {detail['chat_messages']} chat message(s), {len(detail['run_artifacts'])} run folder(s) and "
              f"{detail['speech_files']} speech file(s): {detail['bytes_freed'] / 1e6:.1f} MB")
    if not dry_run and not any((detail["chat_messages"], detail["run_artifacts"], detail["speech_files"])):
        err.print("nothing had aged out", highlight=False)
