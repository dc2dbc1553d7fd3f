"""Operator logins for the console: names and argon2id hashes from ``console.operators``.

Hashes are argon2id PHC strings made by argon2-cffi's ``PasswordHasher`` (RFC 9106 parameters as that library
sets them). A login names who approves: the console records the operator, a channel the IDE's model cannot use.
"""

from __future__ import annotations

import asyncio
import functools
import hmac

from chiffon.shared.config import Operator
from chiffon.shared.errors import InvalidInput

MIN_PASSWORD_CHARS = 12


@functools.cache
def _hasher():  # type: ignore[no-untyped-def]
    from argon2 import PasswordHasher

    return PasswordHasher()


@functools.cache
def _decoy() -> str:
    """A hash checked for unknown names, so that a wrong name costs as long as a wrong password."""
    return str(_hasher().hash("chiffon: no such operator"))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` for ``console.operators``. Raises InvalidInput under 12 characters."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput("password", f"use at least {MIN_PASSWORD_CHARS} characters")
    return str(_hasher().hash(password))


def check(operators: list[Operator], name: str, password: str) -> bool:
    """True when ``name`` is an operator and ``password`` matches its hash (constant work for unknown names)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    found = next((op for op in operators if hmac.compare_digest(op.name, name or "")), None)
    stored = found.password_hash.get_secret_value() if found is not None else _decoy()
    try:
        _hasher().verify(stored, password or "")
    except (VerificationError, InvalidHashError):
        return False
    return found is not None


async def login(operators: list[Operator], name: str, password: str) -> bool:
    """:func:`check` off the event loop (argon2 takes tens of milliseconds on purpose)."""
    return await asyncio.to_thread(check, operators, name, password)
