"""Operator logins for the console: names and argon2id hashes from ``console.operators``.

Hashes are argon2id PHC strings made by argon2-cffi's ``PasswordHasher`` (RFC 9106 parameters as that library
sets them). A login names who approves: the console records the operator, a channel the IDE's model cannot use.

Failed logins back off (:class:`LoginGuard`) per name and per client address: after
``console.login_max_failures`` failures the name and the address are refused for ``console.login_base_delay_s``
(doubled for each failure after that, at most ``console.login_max_delay_s``) without the password being checked;
a good login resets its name and address. The counts live in the console's memory: one console process serves
the pages, and a restart (which needs the host's operator) starts them afresh. Each failure and each lockout is
an audit record (``console_login_failed``, ``console_login_locked``: name and address, never the password).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chiffon.shared.config import ConsoleSettings, Operator
from chiffon.shared.errors import InvalidInput

if TYPE_CHECKING:
    from chiffon.shared.audit import AuditLog

log = logging.getLogger(__name__)

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


MAX_TRACKED = 10_000  # names and addresses remembered at most; the quietest are forgotten first


@dataclass
class _Failures:
    count: int = 0
    last_s: float = 0.0
    locked_until_s: float = 0.0


class LoginGuard:
    """Exponential back-off of failed logins, per name and per client address (in memory).

    ``clock`` gives seconds (monotonic; tests pass their own). After ``max_failures`` failures of a name, or from an
    address, each one ``window_s`` or less after the one before, that name/address is refused for ``base_delay_s``,
    then ``base_delay_s * 2**k`` after the k-th further failure, at most ``max_delay_s``.
    """

    def __init__(self, max_failures: int = 5, window_s: float = 900.0, base_delay_s: float = 30.0,
                 max_delay_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s = max_failures, window_s
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self.clock = clock
        self._seen: dict[tuple[str, str], _Failures] = {}

    @classmethod
    def from_settings(cls, console: ConsoleSettings) -> LoginGuard:
        """A guard with the ``console.login_*`` settings."""
        return cls(console.login_max_failures, console.login_window_s, console.login_base_delay_s,
                   console.login_max_delay_s)

    @staticmethod
    def _keys(name: str, address: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return ("name", name), ("address", address)

    def wait_s(self, name: str, address: str) -> float:
        """Seconds before ``name`` may try again from ``address``; 0 when it may now."""
        now = self.clock()
        return max([0.0, *(f.locked_until_s - now for k in self._keys(name, address) if (f := self._seen.get(k)))])

    def failed(self, name: str, address: str) -> float:
        """Count one failure of ``name`` from ``address``; returns the back-off it starts, seconds (0: none)."""
        now, started = self.clock(), 0.0
        for key in self._keys(name, address):
            seen = self._seen.setdefault(key, _Failures())
            if now - seen.last_s > self.window_s:
                seen.count = 0  # a quiet gap: start counting afresh
            seen.count, seen.last_s = seen.count + 1, now
            if seen.count >= self.max_failures:
                delay = min(self.max_delay_s, self.base_delay_s * 2 ** (seen.count - self.max_failures))
                seen.locked_until_s = now + delay
                started = max(started, delay)
        self._forget(now)
        return started

    def succeeded(self, name: str, address: str) -> None:
        """A good login: forget the failures of ``name`` and of ``address``."""
        for key in self._keys(name, address):
            self._seen.pop(key, None)

    def _forget(self, now: float) -> None:
        if len(self._seen) <= MAX_TRACKED:
            return
        for key, seen in list(self._seen.items()):  # first what is quiet and not backed off
            if now - seen.last_s > self.window_s and seen.locked_until_s <= now:
                del self._seen[key]
        for key in sorted(self._seen, key=lambda k: self._seen[k].last_s)[:len(self._seen) - MAX_TRACKED]:
            del self._seen[key]


class ConsoleLogin:
    """The console's login check: back-off (:class:`LoginGuard`), then the password, then the audit record."""

    def __init__(self, operators: list[Operator], guard: LoginGuard, audit: AuditLog | None) -> None:
        self.operators, self.guard, self.audit = operators, guard, audit

    async def _record(self, kind: str, subject: str, body: dict[str, object]) -> None:
        if self.audit is not None:
            await asyncio.to_thread(self.audit.record, kind, subject, body)

    async def login(self, name: str, password: str, address: str) -> bool:
        """True when ``name`` may log in with ``password`` from ``address`` (a client IP, or ``"unknown"``).

        Refused at once (no password check, no audit record: a flood must not fill the audit) while the name or the
        address is backed off; a failure is audited, and so is the lockout it starts.
        """
        wait = self.guard.wait_s(name, address)
        if wait > 0:
            log.warning("console login of %r from %s refused: backed off for %.0f s more", name, address, wait)
            return False
        if await login(self.operators, name, password):
            self.guard.succeeded(name, address)
            return True
        delay = self.guard.failed(name, address)
        await self._record("console_login_failed", f"console login failed: {name} from {address}",
                           {"name": name, "address": address})
        if delay:
            await self._record("console_login_locked",
                               f"console login backed off {delay:.0f} s: {name} from {address}",
                               {"name": name, "address": address, "delay_s": delay})
        return False


def who(request: Any) -> str:
    """The logged-in operator of a Gradio request (``gr.Request``). Raises gr.Error when there is none."""
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        import gradio as gr

        raise gr.Error("not logged in")
    return str(name)
