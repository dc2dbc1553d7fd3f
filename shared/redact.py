"""Secret redaction for logs, tool output and audit commits.

Two rules, applied recursively to dicts, lists and strings:

* a value under a key that names a secret (``password``, ``token``,
  ``api_key``, ``secret``, ``private_key``, ``vault`` ...) is replaced whole;
* inside any string, well-known secret shapes are masked: ``Authorization:
  Bearer`` values, Anthropic/OpenAI keys (``sk-...``), GitHub tokens, AWS access
  key ids, PEM private-key blocks, Ansible Vault payloads, the password part
  of ``scheme://user:password@host`` URLs, ``FOO_PASSWORD=...``/``token: ...``
  assignments and JSON ``"password": "..."`` pairs.

A third rule needs no pattern: chiffon knows the secret values it hands Ansible (secret extra vars, typed
passwords, vault-decrypted values), so a :class:`Redactor` replaces each of those values wherever it shows up
(``requirepass <value>``, ``DB_PASS=<value>``), raw or JSON-escaped. Values given to :func:`remember` are
replaced by :func:`redact_text` and :func:`redact` too, for the rest of the process: the audit repo, the error
bus and the Redis streams mask them whatever path a message took.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

REDACTED = "***REDACTED***"

_SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)|(^|[_-])pass($|[_-])|secret|token(?!s)|api[_-]?key|private[_-]?key|"
    r"credential|(^|[_-])auth(orization)?($|[_-])|vault_pass|bearer)",
    re.IGNORECASE,
)

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.S), REDACTED),
    (re.compile(r"\$ANSIBLE_VAULT;[^\n]*(\n[0-9a-f]+)+"), REDACTED),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"), r"\1" + REDACTED),
    (re.compile(r"\bsk-(ant-)?[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+(@)", re.I), r"\1" + REDACTED + r"\2"),
    # KEY=value / key: value where the key names a secret, prefixes included (FOO_PASSWORD=..., DB_TOKEN: ...)
    (re.compile(r"(?i)(\b[\w-]*(?:password|passwd|token|secret|api[_-]?key)\s*[=:]\s*[\"']?)(?![\s{\[])"
                r"(?!\*\*\*)[^\s,;'\"]+"), r"\1" + REDACTED),
    # JSON: "db_password": "value"
    (re.compile(r"(?i)(\"[\w-]*(?:password|passwd|token|secret|api[_-]?key)[\w-]*\"\s*:\s*\")(?!\*\*\*)[^\"]*(\")"),
     r"\1" + REDACTED + r"\2"),
]


def is_secret_key(key: str) -> bool:
    """True when a mapping key names a secret (``db_password``, ``API_TOKEN``...)."""
    return bool(_SECRET_KEY.search(key))


def redact_text(text: str) -> str:
    """Mask remembered secret values and secret-shaped substrings in ``text``; other text is returned unchanged."""
    text = _known.text(text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any) -> Any:
    """Return a copy of ``value`` (any JSON-like structure) with secrets masked."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and is_secret_key(k) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


MIN_SECRET_CHARS = 4  # shorter values ("yes", "80") are not redacted by value: they would mask ordinary text


def leaf_strings(value: Any) -> list[str]:
    """Every string in ``value`` (a string, or dicts/lists/tuples/sets of them), dict keys excluded."""
    if isinstance(value, str):
        return [str(value)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in leaf_strings(v)]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [s for v in value for s in leaf_strings(v)]
    return []


def _forms(secret: str) -> set[str]:
    """How a diff, a log line or a JSON record can spell ``secret``: raw, JSON-escaped, stripped, line by line."""
    out: set[str] = set()
    for s in {secret, secret.strip(), *(line.strip() for line in secret.splitlines())}:
        if len(s) >= MIN_SECRET_CHARS:
            out |= {s, json.dumps(s)[1:-1], json.dumps(s, ensure_ascii=False)[1:-1]}
    return out


class Redactor:
    """Known secret values, each replaced by :data:`REDACTED` wherever it appears.

    Built from strings or nested dicts/lists of them (:func:`leaf_strings`); values shorter than
    :data:`MIN_SECRET_CHARS` are ignored. Longest values are matched first, with one compiled regex, so a
    secret containing another is masked whole. Thread-safe: :meth:`add` swaps the regex in one assignment.
    """

    def __init__(self, values: Any = ()) -> None:
        self._lock = threading.Lock()
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self.add(values)

    def __repr__(self) -> str:  # never print a secret, even in a traceback
        return f"Redactor({len(self._values)} values)"

    def __bool__(self) -> bool:
        return self._pattern is not None

    def add(self, values: Any) -> None:
        """Also mask ``values`` (a string or a nested structure of strings)."""
        new = {form for s in leaf_strings(values) for form in _forms(s)}
        if not new or new <= self._values:
            return
        with self._lock:
            self._values = self._values | new
            ordered = sorted(self._values, key=lambda v: (-len(v), v))
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def text(self, text: str) -> str:
        """``text`` with every known value replaced (by value only; no pattern)."""
        pattern = self._pattern
        return pattern.sub(REDACTED, text) if pattern is not None and text else text

    def value(self, value: Any) -> Any:
        """A copy of ``value`` (any JSON-like structure) with every known value replaced in its strings and keys."""
        if not self:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def __call__(self, value: Any) -> Any:
        """:meth:`value`, then the key and pattern rules of :func:`redact`."""
        return redact(self.value(value))


_known = Redactor()


def remember(values: Any) -> None:
    """Mask ``values`` (strings or nested structures of strings) in every later :func:`redact_text`,
    :func:`redact` and :func:`scrub` of this process."""
    _known.add(values)


def scrub(value: Any) -> Any:
    """``value`` with every value given to :func:`remember` replaced, and nothing else changed (no pattern)."""
    return _known.value(value)
