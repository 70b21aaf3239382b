"""One WARNING when a shared service stops answering, one INFO line when it answers again.

Redis behind the shared cache and behind the rate limits can go away for minutes while
every request still asks it: a line per request would bury the log. An :class:`Outage`
logs the start and the end of each episode, and nothing in between.
"""

from __future__ import annotations

import logging
import threading


class Outage:
    """Tracks whether a service is failing, and logs only the changes."""

    def __init__(self, log: logging.Logger, started: str, ended: str) -> None:
        #: ``started`` is formatted with the failure's class name (never its text, which may hold a URL).
        self._log, self._started, self._ended = log, started, ended
        self._lock = threading.Lock()
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            starting, self.failing = not self.failing, True
        if starting:
            self._log.warning(self._started, type(exc).__name__)

    def answered(self) -> None:
        if self.failing:
            with self._lock:
                ending, self.failing = self.failing, False
            if ending:
                self._log.info(self._ended)
