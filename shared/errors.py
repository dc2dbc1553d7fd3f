"""Errors raised by chiffon.

Every error chiffon raises on purpose derives from :class:`ChiffonError`, so a
caller (an MCP tool, the CLI) can tell a deliberate, actionable message from a
bug. Third-party errors are translated at the boundary with ``raise ... from``.

::

    ChiffonError
    ├── ConfigError              configuration file or setting is invalid
    │   ├── MissingCredential    a secret (an API key) is not in the environment; names the variable
    │   └── EmbeddingMismatch    a collection was embedded with another model or dimension
    ├── InvalidInput             an argument is wrong; names the field and what is allowed
    │   ├── PathOutsideRepo      a path escapes the IaC repo (.., absolute, symlink)
    │   └── NoMatch              a request matched no playbook; lists the closest
    │       └── RoleNotApplied   the request is about a role that no playbook applies
    ├── NotFound                 a named thing does not exist
    │   ├── PlaybookNotFound
    │   └── PlanNotFound
    ├── RepoError                the IaC repo is not a git repo or has no playbooks
    ├── PlanStateError           the plan is not in a state that allows this action
    ├── ServiceUnavailable       a backing service cannot be reached; names its URL
    │   ├── StoreUnavailable     PostgreSQL
    │   ├── BusUnavailable       Redis
    │   └── NoBackendAvailable   no LLM tier could answer; says why for each one tried
    ├── BackendError             an LLM backend failed (transient or not); the router falls back
    │   └── ContextOverflow      the prompt plus max_tokens exceed the model's context window
    ├── AnsibleError             ansible-runner could not run a playbook at all
    └── AuditError               the audit repository could not be written or read
"""

from __future__ import annotations


class ChiffonError(Exception):
    """Root of every deliberate chiffon error; ``str(err)`` is meant for humans."""


class ConfigError(ChiffonError):
    """A configuration file or setting is invalid."""


class InvalidInput(ChiffonError, ValueError):
    """An argument is invalid. The message names the field and the allowed values."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


class PathOutsideRepo(InvalidInput):
    """A path points outside the IaC repo (``..``, an absolute path, a symlink out)."""


class MissingCredential(ConfigError):
    """A required secret is not set; the message names the environment variable."""

    def __init__(self, variable: str, purpose: str) -> None:
        self.variable = variable
        super().__init__(f"{variable} is not set: {purpose} needs it. Export it in the server's environment.")


class EmbeddingMismatch(ConfigError):
    """A vector collection holds embeddings of another model or dimension than the configured embedder."""


class NoMatch(InvalidInput):
    """A plain-language request matched no playbook well enough."""

    def __init__(self, request: str, closest: list[str]) -> None:
        self.closest = closest
        hint = f" Closest playbooks: {', '.join(closest)}." if closest else ""
        super().__init__(
            "request",
            f"no playbook matches {request!r}.{hint} "
            "Name a playbook with the ansible tools, or rephrase the request.",
        )


class RoleNotApplied(NoMatch):
    """The request names a role that exists in the repo but that no playbook applies."""

    def __init__(self, request: str, role: str, path: str, groups: list[str]) -> None:
        self.role, self.path, self.closest = role, path, []
        InvalidInput.__init__(
            self, "request",
            f"role {role} exists in {path} but no playbook applies it, so nothing can deploy it as the repo stands. "
            f"chiffon can plan a generated playbook that applies it to a group you pick (shown for approval; "
            f"nothing is written to your checkout): `chiffon run {request!r} --apply-role {role} --apply-to GROUP` (tools: apply_role, apply_to)"
            + (f" (groups: {', '.join(groups[:12])})" if groups else "") + ".",
        )


class NotFound(ChiffonError, LookupError):
    """A named object does not exist."""


class PlaybookNotFound(NotFound):
    """No playbook by that name in the IaC repo."""


class PlanNotFound(NotFound):
    """No plan with that id in the state store."""


class RepoError(ChiffonError):
    """The IaC repo cannot be used: not a git repo, or no playbooks in it."""


class PlanStateError(ChiffonError):
    """The plan's state does not allow the action (unapproved, rejected, already run)."""


class TaskStateError(ChiffonError):
    """The agent task's state does not allow the action (cancel of a finished task...)."""


class ServiceUnavailable(ChiffonError):
    """A backing service cannot be reached. The message names the URL that failed."""


class StoreUnavailable(ServiceUnavailable):
    """PostgreSQL cannot be reached or refused the connection."""


class BusUnavailable(ServiceUnavailable):
    """Redis cannot be reached or refused the connection."""


class NoBackendAvailable(ServiceUnavailable):
    """No LLM tier could answer: every candidate was unavailable or failed."""

    def __init__(self, attempts: list[str]) -> None:
        self.attempts = attempts
        super().__init__("no LLM backend could answer: " + "; ".join(attempts or ["no tier is configured (llm.tiers)"]))


class BackendError(ChiffonError):
    """An LLM backend failed. ``transient`` errors (connection, timeout, 429, 5xx) are retried."""

    def __init__(self, backend: str, message: str, *, transient: bool = False) -> None:
        self.backend = backend
        self.transient = transient
        super().__init__(f"{backend}: {message}")


class InvalidReply(ChiffonError):
    """A model's structured answer did not validate against the expected JSON schema, even when asked again."""

    def __init__(self, caller: str, replies: int, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{caller}: no valid answer in {replies} replies (last: {reason})")


class ContextOverflow(BackendError):
    """The prompt plus max_tokens do not fit the model's context window."""


class AnsibleError(ChiffonError):
    """ansible-runner could not start or finish a playbook run."""


class AuditError(ChiffonError):
    """The git audit repository could not be written or read."""
