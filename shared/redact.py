"""Secret redaction for logs, tool output and audit commits.

Two rules, applied recursively to dicts, lists and strings:

* a value under a key that names a secret (``password``, ``token``,
  ``api_key``, ``secret``, ``private_key``, ``vault`` ...) is replaced whole;
* inside any string, well-known secret shapes are masked: ``Authorization:
  Bearer`` values, Anthropic/OpenAI keys (``sk-...``), GitHub tokens, AWS access
  key ids, PEM private-key blocks, Ansible Vault payloads, the password part
  of ``scheme://user:password@host`` URLs, ``FOO_PASSWORD=...``/``token: ...``
  assignments and JSON ``"password": "..."`` pairs.
"""

from __future__ import annotations

import re
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
    """Mask secret-shaped substrings in ``text``; other text is returned unchanged."""
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
