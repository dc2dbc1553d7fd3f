"""Passwords a human typed at a terminal for one plan: held in this process's memory only.

``chiffon run --ask-vault-pass`` / ``--ask-become-pass`` read the password with no echo and hold it
here for the plan it was typed for; the check and the run hand it to Ansible through ansible-runner's
prompt answers (pexpect on Ansible's own ``Vault password:`` / ``BECOME password:`` prompts, with
``suppress_env_files`` so ansible-runner writes it nowhere). It is never an MCP tool argument, never
stored in PostgreSQL, Redis, the audit repo or a run folder, and never logged: a model with a shell
cannot read it back, and a process that did not prompt for it (a separate worker) does not have it.
"""

from __future__ import annotations

from dataclasses import dataclass

VAULT_PROMPT = r"^Vault password.*:\s*?$"
BECOME_PROMPT = r"^BECOME password.*:\s*?$"


@dataclass(frozen=True)
class Typed:
    """Passwords typed for one plan; ``None`` where none was asked for."""

    vault: str | None = None
    become: str | None = None

    def __repr__(self) -> str:  # never print a password, even in a traceback
        return f"Typed(vault={'***' if self.vault else None}, become={'***' if self.become else None})"

    def flags(self) -> list[str]:
        """The ansible-playbook flags that make Ansible ask: ``--ask-vault-pass``, ``--ask-become-pass``."""
        return (["--ask-vault-pass"] if self.vault else []) + (["--ask-become-pass"] if self.become else [])

    def answers(self) -> dict[str, str]:
        """ansible-runner ``passwords``: Ansible's prompt (a regex) -> what to answer, each answered once.

        ansible-runner answers every later match of a prompt too, for the whole run; a playbook's own ``pause``
        whose prompt reads "BECOME password:" would receive the password and could register it. Ansible asks
        for these passwords once, before any play, so each is sent once and every later match gets an empty
        line (:class:`_AnswerOnce`).
        """
        out: dict[str, str] = {}
        if self.vault:
            out[VAULT_PROMPT] = _AnswerOnce(self.vault)
        if self.become:
            out[BECOME_PROMPT] = _AnswerOnce(self.become)
        return out


class _AnswerOnce(str):
    """A password pexpect sends once: ``sendline`` sends ``answer + linesep``, and ``+`` gives the password the
    first time and nothing after. Its own value is the empty string, so printing it shows nothing."""

    _secret: str
    _sent: bool

    def __new__(cls, secret: str) -> _AnswerOnce:
        answer = super().__new__(cls, "")
        answer._secret, answer._sent = secret, False
        return answer

    def __add__(self, other: str) -> str:  # type: ignore[override]
        if self._sent:
            return str(other)
        self._sent = True
        return self._secret + other

    def __repr__(self) -> str:
        return "'***'"


_held: dict[str, Typed] = {}
PENDING = "pending"  # the key a request's passwords are held under until its plan has an id


def hold(key: str, typed: Typed) -> None:
    """Keep ``typed`` for plan ``key`` (or :data:`PENDING`) in this process."""
    _held[key] = typed


def held(key: str) -> Typed | None:
    """The passwords typed for plan ``key`` in this process, if any."""
    return _held.get(key)


def move(old: str, new: str) -> None:
    """Hand what was typed for ``old`` (a pending request) to plan ``new``."""
    if old in _held:
        _held[new] = _held.pop(old)


def forget(key: str) -> None:
    """Drop what was typed for ``key`` (the plan ran, or was rejected)."""
    _held.pop(key, None)
