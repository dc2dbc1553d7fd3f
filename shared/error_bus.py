"""The error bus: every part reports failures through :func:`report_error`, onto the Redis stream ``chiffon:errors``.

An event is ``{source, error_type, message, severity, context, fingerprint, count, aggregated, at}``:

* ``severity`` is ``info`` (a recovery), ``warning``, ``error`` or ``critical``;
* ``context`` may carry ``plan``, ``task``, ``host``, ``backend`` and ``correlation_id`` (what correlation groups
  incidents by, :mod:`chiffon.orchestrator.incidents`);
* ``fingerprint`` is SHA-1 of source, type and the message with its numbers, hex ids, quoted strings and paths
  replaced by placeholders, so that "timeout after 3.2 s on plan-1a2b" and "... 4.8 s on plan-9f8e" are one.

**Flood detection.** Within ``errors.flood_window_s`` the first ``errors.flood_threshold`` events of one
fingerprint go out as they come; the rest are counted and go out as one event with ``aggregated: true`` and
their ``count`` when the window closes. **Reporters never block:** :func:`report_error` only appends to an
in-memory queue (bounded; when full, the oldest waiting event is dropped and counted in
``chiffon_errors_dropped_total``); a background task publishes. Without a runtime (no bus attached) the error is
only logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from chiffon.shared import metrics
from chiffon.shared.errors import InvalidInput
from chiffon.shared.logs import current_context
from chiffon.shared.redact import redact_text

log = logging.getLogger(__name__)

ERRORS_STREAM = "chiffon:errors"
Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error", "critical")
CONTEXT_KEYS = ("plan", "task", "host", "backend", "correlation_id")
MAX_QUEUE = 10_000
MAX_MESSAGE_CHARS = 2_000
_NORMALISE = [
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<str>"),
    (re.compile(r"(?:/[\w.-]+)+"), "<path>"),
    (re.compile(r"\b[0-9a-f]{6,}\b"), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
]


def fingerprint(source: str, error_type: str, message: str) -> str:
    """SHA-1 hex of ``source``, ``error_type`` and the normalised ``message`` (see the module docstring)."""
    text = message
    for pattern, placeholder in _NORMALISE:
        text = pattern.sub(placeholder, text)
    return hashlib.sha1(f"{source}\x00{error_type}\x00{text}".encode()).hexdigest()


@dataclass
class _Window:
    started: float
    sent: int = 0
    held: int = 0
    last: dict[str, Any] = field(default_factory=dict)


class ErrorReporter:
    """Flood detection and a non-blocking queue in front of the bus (one per process; see :func:`attach`)."""

    def __init__(self, bus: Any, *, threshold: int = 3, window_s: float = 10.0) -> None:
        self.bus = bus
        self.threshold = threshold
        self.window_s = window_s
        self._windows: dict[str, _Window] = {}
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()  # report() may be called from worker threads (ansible-runner, engines)
        self._wake = asyncio.Event()
        self._draining = asyncio.Lock()  # one publisher at a time, so drain() returns only once all is out
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dropped = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._publish_forever())

    def report(self, event: dict[str, Any]) -> None:
        """Take ``event`` (already validated); never blocks, never raises."""
        now = time.monotonic()
        with self._lock:
            window = self._windows.get(event["fingerprint"])
            if window is None or now - window.started >= self.window_s:
                window = self._windows[event["fingerprint"]] = _Window(started=now)
            if window.sent < self.threshold:
                window.sent += 1
                self._enqueue(event)
            else:
                window.held += 1
                window.last = event
        self._kick()

    def _enqueue(self, event: dict[str, Any]) -> None:
        if len(self._queue) >= MAX_QUEUE:
            self._queue.popleft()
            self.dropped += 1
            metrics.ERRORS_DROPPED.inc()
        self._queue.append(event)

    def _kick(self) -> None:
        try:
            if asyncio.get_running_loop() is self._loop:
                self._wake.set()
                return
        except RuntimeError:
            pass
        self._loop.call_soon_threadsafe(self._wake.set)

    def _flush_windows(self, *, everything: bool = False) -> None:
        """Queue one aggregated event per fingerprint whose window closed with events held back."""
        now = time.monotonic()
        with self._lock:
            for key, window in list(self._windows.items()):
                if everything or now - window.started >= self.window_s:
                    if window.held:
                        self._enqueue({**window.last, "count": window.held, "aggregated": True,
                                       "at": datetime.now(UTC).isoformat()})
                    del self._windows[key]

    async def _publish_forever(self) -> None:
        # Stopped by a flag, not by cancelling: Python 3.11's wait_for can swallow a cancellation that lands as
        # the event is set, which reporting during shutdown does all the time.
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(1.0, self.window_s / 2))
            except TimeoutError:
                pass
            self._wake.clear()
            self._flush_windows()
            await self.drain()

    async def drain(self) -> None:
        """Publish everything queued (in one pipeline per batch); a Redis error keeps them for the next try.
        Returns once what was queued when it was called is on the stream, also what a concurrent drain (the
        background publisher) had taken."""
        async with self._draining:
            while self._queue:
                with self._lock:
                    batch = [self._queue.popleft() for _ in range(min(500, len(self._queue)))]
                try:
                    await self.bus.publish_many(ERRORS_STREAM, batch)
                except Exception as exc:  # the bus is down: keep them, say so in the log only (no recursion)
                    with self._lock:
                        self._queue.extendleft(reversed(batch))
                    log.warning("could not publish %d error event(s): %s", len(batch), exc)
                    return

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop publishing, then flush held-back counts and publish what is queued (at most ``timeout_s``: a bus
        that is down loses them, with a log line)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
        self._flush_windows(everything=True)
        try:
            await asyncio.wait_for(self.drain(), timeout_s)
        except TimeoutError:
            log.warning("%d error event(s) not published: the bus did not answer", len(self._queue))


_reporters: list[ErrorReporter] = []  # the newest open runtime's reporter gets the reports


def attach(bus: Any, *, threshold: int = 3, window_s: float = 10.0) -> ErrorReporter:
    """Make this process report to ``bus`` (``open_runtime`` does it); returns the reporter to close."""
    reporter = ErrorReporter(bus, threshold=threshold, window_s=window_s)
    reporter.start()
    _reporters.append(reporter)
    return reporter


async def detach(reporter: ErrorReporter) -> None:
    """Stop reporting through ``reporter`` (publishing what it holds); an older runtime's takes over."""
    if reporter in _reporters:
        _reporters.remove(reporter)
    await reporter.close()


def report_error(source: str, error_type: str, message: str, severity: Severity = "error",
                 context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Report an error (or, with severity ``info`` and type ``recovered``, a recovery) on the error bus.

    Args:
        source: the reporting part, e.g. ``llm``, ``ansible``, ``worker``, ``hostd``, ``backup``, ``doctor``.
        error_type: a short stable name, e.g. ``backend_failed``, ``breaker_open``, ``run_failed``.
        message: what happened, for a human (at most 2,000 characters are kept; secrets masked).
        severity: info, warning, error or critical.
        context: any of plan, task, host, backend, correlation_id (other keys are refused); the ids bound by
            :func:`chiffon.shared.logs.log_context` fill in what is not given (a tool call's ``request`` id
            as ``correlation_id``).

    Returns the event as queued. Never blocks; also logs it.

    Raises:
        InvalidInput: an unknown severity or context key, or an empty source or type.
    """
    if severity not in SEVERITIES:
        raise InvalidInput("severity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
    if not source or not error_type:
        raise InvalidInput("source", "source and error_type must be non-empty")
    context = {k: str(v) for k, v in (context or {}).items() if v is not None}
    unknown = set(context) - set(CONTEXT_KEYS)
    if unknown:
        raise InvalidInput("context", f"unknown key(s) {', '.join(sorted(unknown))}; use {', '.join(CONTEXT_KEYS)}")
    bound = current_context()  # the ids of the work in hand (shared.logs.log_context) fill what the caller left
    if "request" in bound:
        bound["correlation_id"] = bound.pop("request")
    context = {**{k: v for k, v in bound.items() if k in CONTEXT_KEYS}, **context}
    # before it is logged, fingerprinted or queued: known secret values (a failed task quoting a password) and
    # secret-shaped text are masked (chiffon.shared.redact)
    message = redact_text(message)[:MAX_MESSAGE_CHARS]
    context = {k: redact_text(v) for k, v in context.items()}
    event = {"source": source, "error_type": error_type, "message": message, "severity": severity,
             "context": context, "fingerprint": fingerprint(source, error_type, message), "count": 1,
             "aggregated": False, "at": datetime.now(UTC).isoformat()}
    metrics.ERRORS.labels(source, severity).inc()
    (log.info if severity == "info" else log.warning)("%s %s: %s %s", source, error_type, message, context or "")
    if _reporters:
        _reporters[-1].report(event)
    return event


def report_recovery(source: str, message: str, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Say that what failed works again (resolves the open incidents it matches): ``info`` ``recovered``."""
    return report_error(source, "recovered", message, "info", context)


def report_heartbeats(stopped: Iterable[str], resumed: Iterable[str]) -> None:
    """Report hosts whose hostd heartbeats stopped (``hostd`` ``heartbeat_lost``, a warning with the host) and
    those whose heartbeats came back (``recovered``, which resolves the incident): what
    :meth:`chiffon.shared.hosts.HeartbeatWatch.check` returns as ``stopped`` and ``resumed``."""
    for host in stopped:
        report_error("hostd", "heartbeat_lost", f"{host}: no heartbeat within its TTL (is chiffon-hostd running "
                     "there?); work for it waits", "warning", {"host": host})
    for host in resumed:
        report_recovery("hostd", f"{host}: heartbeats again", {"host": host})
