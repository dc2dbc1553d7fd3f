"""Signed backup manifests: a SHA-256 digest of every file, and an HMAC-SHA256 over the manifest.

The key is 32 random bytes in ``CHIFFON_HOME/keys/backup.key`` (0600 in a 0700 folder), made by the first
backup. Whoever can write a backup folder (a NAS share, a copied archive) but not the home cannot make a
restore accept a changed file, a planted file, a path out of the folder, or an edited manifest.

The signature is ``HMAC-SHA256(key, canonical)`` in hex, where ``canonical`` is the manifest without its
``signature`` field as JSON with sorted keys and ``(",", ":")`` separators (RFC 2104 HMAC, FIPS 180-4 SHA-256).

**Keep a copy of the key off the machine**: a restore into a new home needs it (``chiffon restore --key PATH``,
which also installs it as the new home's key when that home has none). Without the key a backup cannot be
restored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from chiffon.shared.errors import InvalidInput

KEY_BYTES = 32
_CHUNK = 1 << 20


def key_path(home: Path) -> Path:
    """Where ``home`` keeps its backup key: ``home/keys/backup.key``."""
    return home / "keys" / "backup.key"


def _private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)


def install_key(home: Path, key: bytes) -> Path:
    """Write ``key`` as ``home``'s backup key (0600, created exclusively); returns its path.

    Raises:
        FileExistsError: the home already has a key (never overwritten).
    """
    path = key_path(home)
    _private_folder(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return path


def load_key(path: Path) -> bytes:
    """The 32-byte key in ``path``.

    Raises:
        InvalidInput: missing, unreadable, or not 32 bytes (field ``key``).
    """
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise InvalidInput("key", f"cannot read the backup key {path}: {exc.strerror}; a backup made in another "
                                  "home needs that home's keys/backup.key: pass --key PATH") from exc
    if len(key) != KEY_BYTES:
        raise InvalidInput("key", f"{path} holds {len(key)} bytes, not a {KEY_BYTES}-byte backup key")
    return key


def home_key(home: Path) -> bytes:
    """``home``'s backup key, made (32 random bytes, 0600) when it has none."""
    path = key_path(home)
    if not path.exists():
        try:
            install_key(home, secrets.token_bytes(KEY_BYTES))
        except FileExistsError:
            pass  # another backup made it first
    return load_key(path)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(folder: Path) -> dict[str, Path]:
    """Every entry below ``folder`` but ``manifest.json`` that is not a directory: ``{posix relative path: path}``."""
    found = {}
    for root, dirs, files in os.walk(folder):  # never follows a symlinked folder: it is listed as an entry
        for name in files + [d for d in dirs if Path(root, d).is_symlink()]:
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if rel != "manifest.json":
                found[rel] = path
    return found


def digests(folder: Path) -> dict[str, str]:
    """``{relative path: hex SHA-256}`` of every file below ``folder`` (``manifest.json`` excluded)."""
    return {rel: sha256_file(path) for rel, path in sorted(_walk(folder).items())}


def signature(manifest: dict[str, Any], key: bytes) -> str:
    """Hex HMAC-SHA256 of ``manifest`` (its ``signature`` field left out) under ``key``."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def confined(folder: Path, rel: str, what: str = "path") -> Path:
    """``folder / rel`` once ``rel`` is a relative POSIX path with no ``..`` that stays in ``folder`` when
    resolved (symlinks included).

    Raises:
        InvalidInput: an absolute path, a ``..`` part, or one that resolves outside ``folder`` (field ``manifest``).
    """
    parts = PurePosixPath(rel).parts
    if not rel or rel.startswith("/") or "\\" in rel or ".." in parts or PurePosixPath(rel).is_absolute():
        raise InvalidInput("manifest", f"{what} {rel!r} points outside the backup (absolute or with '..')")
    path = folder / rel
    if not path.resolve().is_relative_to(folder.resolve()):
        raise InvalidInput("manifest", f"{what} {rel!r} resolves outside the backup folder (a symlink?)")
    return path


def verify(folder: Path, manifest: dict[str, Any], key: bytes) -> None:
    """Check ``folder`` against its signed ``manifest``; reads every file once.

    Raises:
        InvalidInput: unsigned, a signature that does not match ``key``, a path out of the folder, a symlink, a
            file missing, a file not in the manifest, or a file whose SHA-256 does not match (field ``manifest``).
    """
    sig = manifest.get("signature")
    if not isinstance(sig, str) or not isinstance(manifest.get("files"), dict):
        raise InvalidInput("manifest", f"{folder / 'manifest.json'} is not signed (made before chiffon signed "
                                       "backups, or edited): refusing to restore it")
    if not hmac.compare_digest(sig, signature(manifest, key)):
        raise InvalidInput("manifest", f"the signature of {folder / 'manifest.json'} does not match the backup key: "
                                       "the manifest was edited, or the backup was made with another key (--key)")
    files: dict[str, str] = manifest["files"]
    for rel in files:
        confined(folder, rel)
    present = _walk(folder)
    for rel, path in present.items():
        if path.is_symlink():
            raise InvalidInput("manifest", f"{rel} in {folder} is a symlink; a backup holds none")
        if rel not in files:
            raise InvalidInput("manifest", f"{rel} in {folder} is not in the manifest (planted?)")
    for rel, expected in files.items():
        if rel not in present:
            raise InvalidInput("manifest", f"{rel} is in the manifest but missing from {folder}")
        if not stat.S_ISREG(present[rel].lstat().st_mode) or not hmac.compare_digest(sha256_file(present[rel]),
                                                                                       str(expected)):
            raise InvalidInput("manifest", f"{rel} in {folder}: its SHA-256 does not match the manifest (changed)")
