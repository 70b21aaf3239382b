"""A per-visitor rate limit for the hybrid endpoint, in one process."""

from __future__ import annotations

import threading
import time


class RateLimit:
    """At most ``per_minute`` events a visitor in each minute, in this process: enough to
    stop a page that loops, without a shared store. Bounded: the table is emptied when it
    holds too many visitors."""

    def __init__(self, per_minute: int, max_visitors: int = 50_000) -> None:
        self.per_minute = per_minute
        self.max_visitors = max_visitors
        self._lock = threading.Lock()
        self._minute = 0
        self._counts: dict[str, int] = {}

    def allows(self, visitor_id: str) -> bool:
        minute = int(time.time() // 60)
        with self._lock:
            if minute != self._minute or len(self._counts) >= self.max_visitors:
                self._minute, self._counts = minute, {}
            count = self._counts.get(visitor_id, 0) + 1
            self._counts[visitor_id] = count
        return count <= self.per_minute

