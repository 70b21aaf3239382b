"""A circuit breaker for one of Raptor's APIs: after a few failed calls in a row, pause
calls for a while, then let one call through to try again.

Written here rather than taken from a library (pybreaker): what cdp_bridge needs beside
the counting is its logging, one WARNING when an episode of failures starts and one
INFO line when it ends, not a line per page view; the whole of it is this class.
"""

from __future__ import annotations

import logging
import threading
import time

from ..metrics import BREAKER_OPEN
from ..settings import OutsideApi


class CircuitBreaker:
    """Counts failures in a row; while paused, :meth:`allows` says no."""

    def __init__(self, failures_before_pause: int, pause_seconds: float, *, client: str, what: str, api: str,
                 without: str, log: logging.Logger) -> None:
        """``client`` labels the gauge; the log lines say ``"{what}: {api} failed (…); {without}
        until it answers again"`` on ``log``."""
        self.failures_before_pause = failures_before_pause
        self._what, self._api, self._without, self._log = what, api, without, log
        #: ``cdp_breaker_open{client=…}``: 1 while this breaker pauses calls.
        self._open_gauge = BREAKER_OPEN.labels(client)
        self._open_gauge.set(0)
        self.pause_seconds = pause_seconds
        self._lock = threading.Lock()
        self._failures = 0
        self._paused_until = 0.0

    @property
    def failures(self) -> int:
        return self._failures

    def allows(self) -> bool:
        """Whether a call may be made now. Once a pause ends, one call is let through (its
        outcome closes the breaker or starts another pause); the others still wait."""
        if self._failures < self.failures_before_pause:  # closed: the usual case, decided without the lock
            return True
        with self._lock:
            if self._failures < self.failures_before_pause:
                return True
            now = time.monotonic()
            if now < self._paused_until:
                return False
            self._paused_until = now + self.pause_seconds
            return True

    def succeeded(self) -> None:
        if not self._failures:  # nothing to close: the usual case, without the lock or the gauge
            return
        with self._lock:
            failures, self._failures, self._paused_until = self._failures, 0, 0.0
        self._open_gauge.set(0)
        if failures:
            self._log.info("%s: %s answers again (after %s failed calls)", self._what, self._api, failures)

    def failed(self, reason: str) -> None:
        with self._lock:
            self._failures += 1
            failures = self._failures
            pausing = failures == self.failures_before_pause
            if pausing:
                self._paused_until = time.monotonic() + self.pause_seconds
        if failures >= self.failures_before_pause:
            self._open_gauge.set(1)
        if failures == 1:
            self._log.warning("%s: %s failed (%s); %s until it answers again (one line per episode)",
                              self._what, self._api, reason, self._without)
        elif pausing:
            self._log.info("%s: %s failed calls in a row; calls pause for %g s, then one tries again",
                           self._what, failures, self.pause_seconds)
        else:
            self._log.debug("%s: %s failed again (%s); %s in a row", self._what, self._api, reason, failures)


def breaker_for(api: OutsideApi, *, what: str, api_name: str, without: str) -> CircuitBreaker:
    """The one way an outside API's breaker is made: from its settings section, logging
    on ``cdp_bridge.<name>`` one WARNING per episode in the words given."""
    return CircuitBreaker(api.failures_before_pause, api.pause_seconds, client=api.name, what=what, api=api_name,
                          without=without, log=logging.getLogger(f"cdp_bridge.{api.name}"))
