"""Backups of chiffon's state, and restoring them into an empty ``CHIFFON_HOME``.

``chiffon backup`` writes one dated folder (``CHIFFON_HOME/backups/YYYYmmdd-HHMMSS``
unless ``--dest``) holding:

* ``postgres.dump``: ``pg_dump --format=custom`` of the state (plans, approvals,
  runs, ledger, chat history, agent tasks), with the ``pg_dump`` of the embedded
  server's own PostgreSQL 16 (the ``pgserver`` wheel) or the one on the PATH;
* ``chroma/``: a copy of the embedded ChromaDB directory, its SQLite file copied
  through SQLite's online backup API so a concurrent writer cannot tear it; with a
  Chroma *server* (``chroma_url``), ``chroma-export/`` instead: every collection read
  through the server's API (``<name>.jsonl``: one header line with the collection's
  metadata, then ``{"id", "document", "metadata"}`` per record, and ``<name>.npy``: the
  embeddings, float32, in the same order), written back the same way on restore;
* ``audit.bundle``: ``git bundle --all`` of the audit repository;
* ``manifest.json``: what is in it, sizes, and when; ``files``: the SHA-256 of every other file; ``signature``:
  an HMAC-SHA256 of the manifest with the home's key ``CHIFFON_HOME/keys/backup.key``
  (:mod:`orchestrator.backup_sign`; keep a copy of that key off the machine: a restore needs it).

After a successful backup the same parent is thinned out (:func:`prune`: every backup of
the last 24 hours, then one a day for ``backup.keep_days``, 7); ``chiffon deploy systemd``
emits a timer that runs it on ``backup.schedule`` (every 30 minutes). Each backup, good or failed, is recorded
(:mod:`orchestrator.jobs`) so ``chiffon doctor`` can say when the last one ran. ``chiffon restore FOLDER`` refuses a home that already holds
state unless ``--force``; it restores with ``pg_restore --clean --if-exists``. It trusts nothing in the folder:
:func:`check_restorable` refuses, before anything changes, an unsigned manifest or one whose signature does not
match the key (the home's, or ``--key PATH``), a path that is absolute, has ``..`` or resolves outside the folder,
a symlink, a file missing or not listed, and a file whose SHA-256 does not match.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chiffon.orchestrator import backup_sign
from chiffon.shared.config import Settings
from chiffon.shared.error_bus import report_error
from chiffon.shared.errors import ChiffonError, InvalidInput

KEEP_DAYS = 7
_STAMP = "%Y%m%d-%H%M%S"
STATE_DIRS = ("postgres", "chroma", "audit")
PART_NAMES = {("postgres", "file"): "postgres.dump", ("chroma", "dir"): "chroma",
              ("chroma", "export"): "chroma-export", ("audit", "file"): "audit.bundle"}  # the only names a part has


class BackupError(ChiffonError):
    """A backup or restore step failed; the message names the step and the tool's error."""


def _pg_tool(name: str) -> str:
    try:
        import pgserver

        candidate = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
        if candidate.is_file():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found: install the PostgreSQL client tools (postgresql-client-16)")
    return found


def _run(step: str, args: list[str]) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise BackupError(f"{step} failed: {done.stderr.strip()[-800:] or done.stdout.strip()[-800:]}")


def _copy_chroma(source: Path, dest: Path) -> None:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("chroma.sqlite3*"))
    db = source / "chroma.sqlite3"
    if db.exists():
        with sqlite3.connect(db) as src, sqlite3.connect(dest / "chroma.sqlite3") as out:
            src.backup(out)


_PAGE = 1000  # records per Chroma API call when exporting


def export_chroma(client: Any, dest: Path) -> dict[str, int]:
    """Every collection of a Chroma server through its API into ``dest``; returns ``{collection: records}``.

    Pages of 1,000 records (``get(limit, offset)``); the embeddings go to ``<name>.npy`` (float32, n x dim).
    """
    import numpy as np

    dest.mkdir(parents=True)
    counts: dict[str, int] = {}
    for listed in client.list_collections():
        col = client.get_collection(listed.name if hasattr(listed, "name") else listed, embedding_function=None)
        vectors: list[Any] = []
        with (dest / f"{col.name}.jsonl").open("w") as out:
            out.write(json.dumps({"collection": col.name, "metadata": col.metadata}) + "\n")
            offset = 0
            while True:
                page = col.get(limit=_PAGE, offset=offset, include=["embeddings", "documents", "metadatas"])
                if not page["ids"]:
                    break
                for i, rid in enumerate(page["ids"]):
                    out.write(json.dumps({"id": rid, "document": page["documents"][i],
                                          "metadata": page["metadatas"][i]}) + "\n")
                vectors.append(np.asarray(page["embeddings"], dtype=np.float32))
                offset += len(page["ids"])
        np.save(dest / f"{col.name}.npy", np.concatenate(vectors) if vectors else np.zeros((0, 0), np.float32))
        counts[col.name] = offset
    return counts


def import_chroma(client: Any, source: Path) -> dict[str, int]:
    """Write an :func:`export_chroma` folder back through ``client`` (a collection of the same name is replaced);
    returns ``{collection: records}``."""
    import numpy as np

    counts: dict[str, int] = {}
    batch = max(1, min(client.get_max_batch_size(), 5000))
    for lines in sorted(source.glob("*.jsonl")):
        header, *rows = (json.loads(line) for line in lines.read_text().splitlines())
        name = header["collection"]
        vectors = np.load(backup_sign.confined(source, f"{name}.npy", "collection"))
        if name in {c.name if hasattr(c, "name") else c for c in client.list_collections()}:
            client.delete_collection(name)
        col = client.create_collection(name, metadata=header["metadata"], embedding_function=None)
        for start in range(0, len(rows), batch):
            part = rows[start:start + batch]
            col.add(ids=[r["id"] for r in part], documents=[r["document"] for r in part],
                    metadatas=[r["metadata"] for r in part], embeddings=vectors[start:start + len(part)])
        counts[name] = len(rows)
    return counts


def backup(settings: Settings, database_url: str, dest: Path | None = None, keep_days: int = KEEP_DAYS,
           now: datetime | None = None) -> dict[str, Any]:
    """Write a backup folder; returns its manifest (``folder`` added). Old folders beyond ``keep_days`` go.

    ``database_url`` is the store's URL (``Store.url``: the embedded server's socket URL when embedded).

    Raises:
        BackupError: pg_dump, the Chroma copy or git bundle failed (the half-written folder is removed).
    """
    now = now or datetime.now(UTC)
    key = backup_sign.home_key(settings.home)
    parent = dest or settings.home / "backups"
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder = parent / now.strftime(_STAMP)
    folder.mkdir(mode=0o700, exist_ok=False)
    manifest: dict[str, Any] = {"created_at": now.isoformat(), "chiffon_home": str(settings.home), "parts": {}}
    try:
        _run("pg_dump", [_pg_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(folder / "postgres.dump"),
                         database_url])
        manifest["parts"]["postgres"] = {"file": "postgres.dump", "bytes": (folder / "postgres.dump").stat().st_size}
        chroma = settings.home / "chroma"
        if settings.chroma_url:
            from chiffon.servers.memory.vectors import open_client

            counts = export_chroma(open_client(settings.home, settings.chroma_url), folder / "chroma-export")
            manifest["parts"]["chroma"] = {"export": "chroma-export", "records": counts}
        elif chroma.exists():
            _copy_chroma(chroma, folder / "chroma")
            manifest["parts"]["chroma"] = {"dir": "chroma"}
        audit = settings.audit_dir
        if (audit / ".git").exists():
            _run("git bundle", ["git", "-C", str(audit), "bundle", "create", str(folder / "audit.bundle"), "--all"])
            manifest["parts"]["audit"] = {"file": "audit.bundle"}
    except BaseException as exc:
        shutil.rmtree(folder, ignore_errors=True)
        report_error("backup", "backup_failed", f"{type(exc).__name__}: {exc}", "error")
        raise
    manifest["files"] = backup_sign.digests(folder)
    manifest["signature"] = backup_sign.signature(manifest, key)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    manifest["folder"] = str(folder)
    manifest["deleted"] = prune(parent, keep_days, now)
    return manifest


def prune(parent: Path, keep_days: int, now: datetime) -> list[str]:
    """Thin out backup folders in ``parent``; returns the names deleted.

    Kept: every backup of the last 24 hours, then the newest of each UTC day up to ``keep_days`` days back
    (a grandfather-father-son rotation without the grandfathers: half-hourly backups cost 48 + ``keep_days``
    copies, not 48 x ``keep_days``). Folders that are not chiffon backups are never touched.
    """
    recent, cutoff = now - timedelta(hours=24), now - timedelta(days=keep_days)
    newest_of_day: dict[str, Path] = {}
    dated = []
    for child in sorted(parent.iterdir()):  # oldest first: the stamp sorts by time
        try:
            made = datetime.strptime(child.name, _STAMP).replace(tzinfo=UTC)
        except ValueError:
            continue  # not ours
        if child.is_dir() and (child / "manifest.json").exists():
            dated.append((made, child))
            newest_of_day[made.strftime("%Y%m%d")] = child
    gone = []
    for made, child in dated:
        if made >= recent or (made >= cutoff and newest_of_day[made.strftime("%Y%m%d")] == child):
            continue
        shutil.rmtree(child)
        gone.append(child.name)
    return gone


def check_restorable(settings: Settings, folder: Path, force: bool, key_file: Path | None = None) -> dict[str, Any]:
    """The folder's manifest, once the folder and the target home are fit for a restore; changes nothing.

    ``key_file``: the backup key the folder was signed with (default: the home's ``keys/backup.key``; a restore
    into a new home needs the old home's key). The whole folder is checked (:func:`backup_sign.verify
    <orchestrator.backup_sign.verify>`): check a private copy of it, so that nothing changes it between the
    check and the restore.

    Raises:
        InvalidInput: not a backup folder, an unreadable key, a manifest unsigned or signed with another key, a
            path out of the folder, a symlink, a file changed, missing or not listed, or a home that already
            holds state (without ``force``).
    """
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file() or manifest_file.is_symlink():
        raise InvalidInput("folder", f"{folder} is not a chiffon backup (no manifest.json)")
    present = [d for d in STATE_DIRS if (settings.home / d).exists() and any((settings.home / d).iterdir())]
    if present and not force:
        raise InvalidInput("home", f"{settings.home} already holds {', '.join(present)}; restore into an empty "
                                   "CHIFFON_HOME, or pass --force to replace it")
    try:
        manifest = json.loads(manifest_file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("manifest", f"{manifest_file} is not JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("parts"), dict):
        raise InvalidInput("manifest", f"{manifest_file} is not a chiffon backup manifest (no parts)")
    key = backup_sign.load_key(key_file or backup_sign.key_path(settings.home))
    backup_sign.verify(folder, manifest, key)
    for (part, field), name in PART_NAMES.items():
        value = manifest["parts"].get(part, {}).get(field)
        if value is not None and value != name:
            backup_sign.confined(folder, str(value), f"part {part}.{field}")
            raise InvalidInput("manifest", f"part {part}.{field} is {value!r}; a chiffon backup names it {name!r}")
    return dict(manifest)


def restore_files(settings: Settings, folder: Path, manifest: dict[str, Any]) -> None:
    """Put back Chroma's directory and the audit repository (the database is restored by :func:`restore_db`)."""
    chroma = manifest["parts"].get("chroma", {})
    if "export" in chroma or ("dir" in chroma and settings.chroma_url):
        from chiffon.servers.memory.vectors import open_client

        client = open_client(settings.home, settings.chroma_url)
        if "export" in chroma:
            import_chroma(client, folder / chroma["export"])
        else:  # an embedded directory restored into a Chroma server: read from a copy (opening it writes)
            with tempfile.TemporaryDirectory(prefix="chiffon-restore-") as tmp:
                shutil.copytree(folder / "chroma", Path(tmp) / "chroma")
                export_chroma(open_client(Path(tmp), None), Path(tmp) / "export")
                import_chroma(client, Path(tmp) / "export")
    elif "dir" in chroma:
        shutil.rmtree(settings.home / "chroma", ignore_errors=True)
        shutil.copytree(folder / "chroma", settings.home / "chroma")
    if "file" in manifest["parts"].get("audit", {}):
        shutil.rmtree(settings.audit_dir, ignore_errors=True)
        _run("git clone", ["git", "clone", "-q", str(folder / "audit.bundle"), str(settings.audit_dir)])


def restore_db(folder: Path, database_url: str) -> None:
    """``pg_restore --clean --if-exists`` of ``postgres.dump`` into ``database_url``."""
    _run("pg_restore", [_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
                        "--dbname", database_url, str(folder / "postgres.dump")])
