"""Logging for entry points: always to stderr (stdout is the MCP channel), as text or JSON lines, with the
correlation ids of the work in hand on every record.

**Correlation.** :func:`log_context` binds ids for the code it wraps (a ``contextvars`` context, so it follows
``await`` and tasks started inside it): ``request`` (one MCP tool call), ``plan``, ``run``, ``task``,
``host``, ``backend``. Every record logged inside carries them, and so does every error reported on the
error bus (:func:`chiffon.shared.error_bus.report_error` adds them to its context), so one plan can be
followed across the orchestrator, the worker and hostd: ``chiffon logs --plan ID``.

**Format.** ``CHIFFON_LOG_FORMAT=json|text``; unset, JSON when systemd's journal receives the stream
(``JOURNAL_STREAM`` is set) and text otherwise. ``chiffon up`` and the units of ``chiffon deploy systemd``
set it to ``json`` (and ``CHIFFON_LOG_LEVEL=info``). One JSON line per record::

    {"ts": "2026-12-01T22:40:01.123+00:00", "level": "INFO", "logger": "chiffon.servers.ansible.execution",
     "message": "run run-1a2b started", "part": "worker", "plan": "plan-9f8e", "run": "run-1a2b"}
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

CONTEXT_FIELDS = ("request", "plan", "run", "task", "host", "backend")
_context: ContextVar[dict[str, str]] = ContextVar("chiffon_log_context", default={})  # noqa: B039 - never mutated
_part = "cli"


@contextmanager
def log_context(**ids: object) -> Iterator[dict[str, str]]:
    """Bind correlation ids (``request``, ``plan``, ``run``, ``task``, ``host``, ``backend``) for the block;
    ``None`` values are skipped, inner bindings add to outer ones. Yields the ids now bound.

    Raises:
        ValueError: a name outside :data:`CONTEXT_FIELDS` (a typo would silently lose the correlation).
    """
    unknown = set(ids) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"unknown log context field(s) {', '.join(sorted(unknown))}; use {', '.join(CONTEXT_FIELDS)}")
    bound = {**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}}
    token = _context.set(bound)
    try:
        yield bound
    finally:
        _context.reset(token)


def current_context() -> dict[str, str]:
    """The correlation ids bound where this runs (a copy)."""
    return dict(_context.get())


class _Correlated(logging.Filter):
    """Put the bound ids and the process's part on each record (``ctx``: the same as ``k=v`` text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _context.get()
        for key, value in ids.items():
            setattr(record, key, value)
        record.part = _part
        record.ctx = (" [" + " ".join(f"{k}={v}" for k, v in ids.items()) + "]") if ids else ""
        return True


def _json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    class Formatter(JsonFormatter):
        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")

    return Formatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                     rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"},
                     reserved_attrs=[*_RESERVED, "ctx"])


_RESERVED = ("args", "created", "exc_text", "filename", "funcName", "levelno", "lineno", "module", "msecs", "msg",
             "pathname", "process", "processName", "relativeCreated", "stack_info", "thread", "threadName",
             "taskName")


def log_format() -> str:
    """``json`` or ``text``: ``CHIFFON_LOG_FORMAT``, else ``json`` under systemd's journal."""
    chosen = os.environ.get("CHIFFON_LOG_FORMAT", "").strip().lower()
    if chosen in ("json", "text"):
        return chosen
    return "json" if os.environ.get("JOURNAL_STREAM") else "text"


def setup_logging(verbose: bool = False, part: str | None = None) -> None:
    """Send every log record to stderr; INFO with ``verbose``, else WARNING. ``CHIFFON_LOG_LEVEL``
    (``debug|info|warning|error``) sets the level of chiffon's own loggers only (libraries stay at WARNING):
    ``chiffon up`` and the systemd units set ``info``, so a run's records reach the logs.

    ``part`` names this process in JSON records (``orchestrator``, ``worker``, ``hostd``, ``console``); the
    format is :func:`log_format`'s.
    """
    global _part
    if part:
        _part = part
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Correlated())
    handler.setFormatter(_json_formatter() if log_format() == "json"
                         else logging.Formatter("%(asctime)s %(levelname)s %(name)s%(ctx)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
    # asyncpg logs a traceback each second while PostgreSQL is down; chiffon's health watch says it once
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    own = os.environ.get("CHIFFON_LOG_LEVEL", "").strip().upper()
    if own in ("DEBUG", "INFO", "WARNING", "ERROR"):
        logging.getLogger("chiffon").setLevel(own)
