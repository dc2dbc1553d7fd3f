"""Content-addressed snapshots of an IaC repo: what was checked and approved is what runs.

At plan time every file the run may read (tracked and untracked, minus what git ignores; the
whole folder when it is not a git repo; never ``.git``) is hashed (SHA-256) into
``CHIFFON_HOME/snapshots/objects``, read-only, and a tree of hard links is laid out under
``snapshots/<digest>/tree``. The digest is the SHA-256 of the manifest (sorted
``path, mode, sha256`` lines), so the same content always gives the same digest and any edit
gives another. The check runs from that tree; the plan, the approval and the audit record carry
the digest; a run verifies the tree against it and runs from it, never from the live checkout.

What the run reads outside the repo (roles and collections paths, plugin folders, absolute ``vars_files``, a
vault password file: :mod:`servers.ansible.outside`) is hashed into the same manifest under its absolute path,
never copied (it may hold secrets): :func:`verified` re-hashes it, and refuses a file changed, added or removed
under those paths since the plan was made.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chiffon.shared.errors import PlanStateError, RepoError

MAX_SNAPSHOT_BYTES = 512 * 1024 * 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Snapshot:
    """A pinned copy of a repo: its digest, the folder to run from, and the files outside the repo it pins
    (``{absolute path: sha256}``), checked where they are."""

    digest: str
    tree: Path
    outside: dict[str, str] = field(default_factory=dict)


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


_SKIP_DIRS = frozenset({".git", "__pycache__", ".tox", ".venv"})


def _walk_outside(roots: Iterable[str]) -> list[str]:
    """Absolute paths of the regular files under each root (a file or a folder), sorted; caches and ``.git`` are
    left out, links are followed to files but never into folders."""
    found: set[str] = set()
    for root in roots:
        if os.path.isfile(root):
            found.add(root)
            continue
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
            found.update(os.path.join(folder, n) for n in names
                         if not n.endswith(".pyc") and os.path.isfile(os.path.join(folder, n)))
    return sorted(found)


def _outside_rows(root: Path, outside: Iterable[Path], names: set[str]) -> tuple[list[str], list[tuple[str, str, str]]]:
    """``(roots, rows)`` for what the run reads outside the snapshot: paths in the repo the snapshot already
    holds are left out (a gitignored file inside the repo is kept, under its absolute path)."""
    top = root.resolve()
    roots = []
    for path in outside:
        real = Path(os.path.abspath(path))
        if real.is_relative_to(top) and (real == top or real.relative_to(top).as_posix() in names
                                         or any(n.startswith(real.relative_to(top).as_posix() + "/") for n in names)):
            continue
        if real.exists():
            roots.append(str(real))
    rows, total = [], 0
    for name in _walk_outside(roots):
        info = os.stat(name)
        total += info.st_size
        if total > MAX_SNAPSHOT_BYTES:
            raise RepoError(f"what the run reads outside {root} ({', '.join(roots[:3])}) holds more than "
                            f"{MAX_SNAPSHOT_BYTES >> 20} MiB; chiffon hashes every file a run may read. Point "
                            "roles_path/collections_path at the roles and collections the playbooks use.")
        rows.append((name, "x" if info.st_mode & stat.S_IXUSR else "r", _hash(Path(name))))
    return sorted(dict.fromkeys(roots)), rows


def digest_of(rows: list[tuple[str, str, str]]) -> str:
    """SHA-256 of the manifest: one ``path\\tmode\\tsha256`` line per file, sorted by path."""
    return hashlib.sha256("".join(f"{p}\t{m}\t{h}\n" for p, m, h in sorted(rows)).encode()).hexdigest()


def take(root: Path, store: Path, outside: Iterable[Path] = ()) -> Snapshot:
    """Snapshot ``root`` into ``store`` (``CHIFFON_HOME/snapshots``); the same content reuses its tree.
    ``outside``: files and folders the run reads outside the repo (absolute), hashed into the digest where they
    are (never copied).

    Raises:
        RepoError: more than :data:`MAX_SNAPSHOT_BYTES` to copy.
    """
    names = _files(root)
    rows = _manifest(root, names)
    roots, outside_rows = _outside_rows(root, outside, {r[0] for r in rows})
    rows += outside_rows
    digest = digest_of(rows)
    folder = store / digest
    if (folder / "manifest.json").is_file():
        try:
            return verified(store, digest)
        except PlanStateError:  # tampered with since it was laid out: lay it out again from the repo
            shutil.rmtree(folder, ignore_errors=True)
    for name, mode, sha in rows:
        if os.path.isabs(name):  # outside the repo: hashed, checked where it is, never copied
            continue
        blob = blob_path(store, sha, mode)
        if not blob.exists() or _hash(blob) != sha:  # a changed blob is replaced, never linked again
            put_blob(blob, (root / name).resolve())
    lay_out(store, {"digest": digest, "files": rows, "outside": roots})
    return Snapshot(digest, folder / "tree", {p: sha for p, _, sha in outside_rows})


def blob_path(store: Path, sha: str, mode: str) -> Path:
    """Where the object of a file with this SHA-256 and mode (``x`` executable) lives in ``store``."""
    return store / "objects" / sha[:2] / (sha + (".x" if mode == "x" else ""))


def put_blob(blob: Path, content: bytes | Path) -> None:
    """Write an object (its bytes, or a file's, streamed) atomically, read-only and owner only: a run cannot change
    what was approved."""
    blob.parent.mkdir(parents=True, exist_ok=True)
    tmp = blob.with_name(blob.name + f".{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    if isinstance(content, Path):
        shutil.copyfile(content, tmp)
    else:
        tmp.write_bytes(content)
    os.chmod(tmp, 0o500 if blob.name.endswith(".x") else 0o400)
    os.replace(tmp, blob)


def lay_out(store: Path, manifest: dict[str, Any]) -> None:
    """Lay out ``store/<digest>/tree`` (hard links to the objects, which must be there) and its ``manifest.json``;
    a snapshot another process laid out first is kept."""
    digest = manifest["digest"]
    staging = store / f".{digest}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for name, mode, sha in manifest["files"]:
        if os.path.isabs(name):
            continue
        target = staging / "tree" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(blob_path(store, sha, mode), target)
        except OSError:  # another filesystem: a read-only copy
            shutil.copy2(blob_path(store, sha, mode), target)
    (staging / "tree").mkdir(parents=True, exist_ok=True)
    (staging / "manifest.json").write_text(json.dumps(manifest))
    try:
        os.replace(staging, store / digest)
    except OSError:  # another process laid out the same snapshot first
        shutil.rmtree(staging, ignore_errors=True)


def verified(store: Path, digest: str) -> Snapshot:
    """The snapshot ``digest``, after checking every file of its tree still hashes to the manifest.

    Files outside the repo (:func:`take`'s ``outside``) are hashed where they are: one changed, removed or added
    under those paths since the plan was made refuses the run too.

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
    outside = {p: sha for p, _, sha in manifest["files"] if os.path.isabs(p)}
    added = sorted(set(_walk_outside(manifest.get("outside", []))) - set(outside))
    if changed or added or digest_of([tuple(r) for r in manifest["files"]]) != digest:
        raise PlanStateError(f"snapshot {digest[:12]} was modified after approval ({', '.join((changed + added)[:5])}); "
                             "nothing ran. Plan again.")
    return Snapshot(digest, tree, outside)


def stage_outside(snap: Snapshot, path: Path, dest: Path) -> Path:
    """A private copy (``dest/<name>``, mode 0600, 0700 when executable) of ``path``, a file outside the repo the
    snapshot pins, after checking the copy's bytes are the approved ones; what Ansible is given instead of the
    live file, so a later edit never reaches the run.

    Raises:
        PlanStateError: ``path`` is not pinned by the snapshot, or its content changed since the plan was made.
    """
    want = snap.outside.get(os.path.abspath(path))
    if want is None:
        raise PlanStateError(f"{path} was not part of the approved plan (snapshot {snap.digest[:12]}); nothing ran. "
                             "Plan again.")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    copy = dest / path.name
    executable = bool(os.stat(path).st_mode & stat.S_IXUSR)
    fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700 if executable else 0o600)
    with os.fdopen(fd, "wb") as out, path.open("rb") as src:
        shutil.copyfileobj(src, out)
    if _hash(copy) != want:
        copy.unlink()
        raise PlanStateError(f"snapshot {snap.digest[:12]} was modified after approval ({path}); nothing ran. "
                             "Plan again.")
    return copy
