"""Content-addressed snapshots of an IaC repo: what was checked and approved is what runs.

At plan time every file the run may read (tracked and untracked, minus what git ignores; the
whole folder when it is not a git repo; never ``.git``) is hashed (SHA-256) into
``CHIFFON_HOME/snapshots/objects``, read-only, and a tree of hard links is laid out under
``snapshots/<digest>/tree``. The digest is the SHA-256 of the manifest (sorted
``path, mode, sha256`` lines), so the same content always gives the same digest and any edit
gives another. The check runs from that tree; the plan, the approval and the audit record carry
the digest; a run verifies the tree against it and runs from it, never from the live checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from chiffon.shared.errors import PlanStateError, RepoError

MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Snapshot:
    """A pinned copy of a repo: its digest and the folder to run from."""

    digest: str
    tree: Path


def _files(root: Path) -> list[str]:
    """Repo-relative paths of every file a run may read (git's view when in git, else every file)."""
    proc = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others",
                           "--exclude-standard"], capture_output=True, timeout=120, check=False)
    if proc.returncode == 0:
        return sorted({n for n in proc.stdout.decode(errors="replace").split("\0") if n})
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".git"]
        found += [os.path.relpath(os.path.join(folder, n), root) for n in names]
    return sorted(found)


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(root: Path, names: list[str]) -> list[tuple[str, str, str]]:
    """``(path, mode, sha256)`` of each regular file inside ``root``; links out of the repo are left out."""
    top = root.resolve()
    rows, total = [], 0
    for name in names:
        path = root / name
        real = path.resolve()
        if not real.is_relative_to(top) or not real.is_file():
            continue
        info = real.stat()
        total += info.st_size
        if total > MAX_SNAPSHOT_BYTES:
            raise RepoError(f"{root} holds more than {MAX_SNAPSHOT_BYTES >> 20} MiB outside .gitignore; chiffon "
                            "snapshots every file a run may read. Ignore large artifacts (ISOs, backups) in git.")
        mode = "x" if info.st_mode & stat.S_IXUSR else "r"
        rows.append((name, mode, _hash(real)))
    return rows


def digest_of(rows: list[tuple[str, str, str]]) -> str:
    """SHA-256 of the manifest: one ``path\\tmode\\tsha256`` line per file, sorted by path."""
    return hashlib.sha256("".join(f"{p}\t{m}\t{h}\n" for p, m, h in sorted(rows)).encode()).hexdigest()


def take(root: Path, store: Path) -> Snapshot:
    """Snapshot ``root`` into ``store`` (``CHIFFON_HOME/snapshots``); the same content reuses its tree.

    Raises:
        RepoError: more than :data:`MAX_SNAPSHOT_BYTES` to copy.
    """
    rows = _manifest(root, _files(root))
    digest = digest_of(rows)
    folder = store / digest
    if (folder / "manifest.json").is_file():
        try:
            return verified(store, digest)
        except PlanStateError:  # tampered with since it was laid out: lay it out again from the repo
            shutil.rmtree(folder, ignore_errors=True)
    objects = store / "objects"
    staging = store / f".{digest}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for name, mode, sha in rows:
        blob = objects / sha[:2] / (sha + (".x" if mode == "x" else ""))
        if not blob.exists() or _hash(blob) != sha:  # a changed blob is replaced, never linked again
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.with_name(blob.name + f".{os.getpid()}.tmp")
            shutil.copyfile((root / name).resolve(), tmp)
            os.chmod(tmp, 0o555 if mode == "x" else 0o444)  # read-only: a run cannot change what was approved
            os.replace(tmp, blob)
        target = staging / "tree" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(blob, target)
        except OSError:  # another filesystem: a read-only copy
            shutil.copy2(blob, target)
    (staging / "manifest.json").write_text(json.dumps({"digest": digest, "files": rows}))
    try:
        os.replace(staging, folder)
    except OSError:  # another process laid out the same snapshot first
        shutil.rmtree(staging, ignore_errors=True)
    return Snapshot(digest, folder / "tree")


def verified(store: Path, digest: str) -> Snapshot:
    """The snapshot ``digest``, after checking every file of its tree still hashes to the manifest.

    Raises:
        PlanStateError: the snapshot is gone or was changed since it was approved (the files are named).
    """
    folder = store / digest
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise PlanStateError(f"snapshot {digest[:12]} of this plan is missing; plan again") from exc
    tree = folder / "tree"
    changed = [p for p, _, sha in manifest["files"] if not (tree / p).is_file() or _hash(tree / p) != sha]
    if changed or digest_of([tuple(r) for r in manifest["files"]]) != digest:
        raise PlanStateError(f"snapshot {digest[:12]} was modified after approval ({', '.join(changed[:5])}); "
                             "nothing ran. Plan again.")
    return Snapshot(digest, tree)
