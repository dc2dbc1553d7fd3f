"""The plaintext of a repo's ansible-vault secrets, so that a run can mask them by value.

chiffon holds the vault password a check or run uses (a password file, or typed at a terminal:
:mod:`servers.ansible.prompted`), so it can decrypt what Ansible will: whole files encrypted with
``ansible-vault encrypt`` and inline ``!vault`` values in YAML. Every string in them (of at least
:data:`chiffon.shared.redact.MIN_SECRET_CHARS` characters) is masked in what the run reports
(:class:`chiffon.shared.redact.Redactor`). Decryption uses ansible-core's own ``VaultLib``; nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

VAULT_HEADER = b"$ANSIBLE_VAULT;"
MAX_FILE_BYTES = 1 << 20  # vars files larger than 1 MiB are not searched for vault values
SUFFIXES = (".yml", ".yaml", ".json", "")


def password_bytes(password_file: Path | None, typed: str | None) -> bytes | None:
    """The vault password: ``typed`` when a human typed one, else what ``password_file`` gives (a file's first
    line, or an executable's output, as Ansible reads it); None when there is neither or it cannot be read."""
    if typed:
        return typed.encode()
    if password_file is None:
        return None
    from ansible.parsing.dataloader import DataLoader
    from ansible.parsing.vault import get_file_vault_secret

    try:
        secret = get_file_vault_secret(filename=str(password_file), loader=DataLoader())
        secret.load()
    except Exception as exc:  # Ansible reports an unreadable password itself, and stops
        log.warning("vault password file %s not read for redaction: %s", password_file, type(exc).__name__)
        return None
    return bytes(secret.bytes) if secret.bytes else None


def _vars_files(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if ".git" in path.relative_to(root).parts or path.suffix not in SUFFIXES or not path.is_file():
            continue
        if path.is_symlink() or path.stat().st_size > MAX_FILE_BYTES:
            continue
        yield path


def _loader(decrypt: Callable[[str], str]) -> type[yaml.SafeLoader]:
    """A YAML loader that decrypts ``!vault`` scalars and reads every other tag (``!unsafe``...) as plain data."""

    class Loader(yaml.SafeLoader):
        pass

    def vault(loader: yaml.SafeLoader, node: yaml.Node) -> str:
        return decrypt(str(loader.construct_scalar(node)))  # type: ignore[arg-type]

    def other(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_mapping(node)  # type: ignore[arg-type]

    Loader.add_constructor("!vault", vault)
    Loader.add_multi_constructor("!", other)
    return Loader


def decrypted_values(root: Path, password: bytes) -> list[Any]:
    """What the vault files and inline ``!vault`` values under ``root`` hold, decrypted with ``password``: one
    entry per file (parsed YAML, or its text when it is not YAML). Files this password does not open are skipped
    (Ansible fails on them itself)."""
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret(password))])

    def decrypt(text: str) -> str:
        plain: bytes = vault.decrypt(text.encode())  # ansible's VaultLib is untyped
        return plain.decode(errors="replace")

    found: list[Any] = []
    for path in _vars_files(root):
        try:
            data = path.read_bytes()
            if data.startswith(VAULT_HEADER):
                plain = decrypt(data.decode())
                try:
                    found.append(yaml.load(plain, Loader=_loader(decrypt)))
                except yaml.YAMLError:
                    found.append(plain)
            elif b"!vault" in data:
                found.append(yaml.load(data.decode(errors="replace"), Loader=_loader(decrypt)))
        except Exception as exc:  # a wrong password, a file that is not YAML: nothing to add from it
            log.debug("%s not decrypted for redaction: %s", path, type(exc).__name__)
    return found
