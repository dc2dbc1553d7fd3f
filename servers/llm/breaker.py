"""A per-backend circuit breaker (Nygard, *Release It!*, 2nd ed., ch. 5 "Circuit Breaker").

closed -> (``failures`` consecutive failures) -> open -> (``cooldown_s``) ->
half-open: one probe request goes through; success closes, failure reopens.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive-failure breaker; ``clock`` is injectable for tests (seconds, monotonic)."""

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> State:
        """closed, open, or half_open (cooldown over: the next request is the probe)."""
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.cooldown_s else "open"

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success."""
        return self._failures

    @property
    def retry_in_s(self) -> float:
        """Seconds until the next probe may go (0 when closed or half-open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """May a request go now? In half-open state only the first caller (the probe) gets True."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        """Record a success: closes the circuit."""
        self._failures, self._opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        """Record a failure: opens after ``threshold`` in a row; a failed probe reopens at once."""
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            self._opened_at = self._clock()
        self._probing = False

    def release_probe(self) -> None:
        """The probe ended without a verdict on the backend (e.g. the caller cancelled)."""
        self._probing = False
