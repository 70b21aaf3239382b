"""A circuit breaker in front of the Redis servers an app shares with its fleet: the
shared cache (``CDP_CACHE_URL``) and the rate-limit storage (``CDP_RATE_LIMIT_STORAGE_URI``).

A Redis that hangs (a stopped process, a partitioned network) answers nothing, and each
call waits its whole timeout (:data:`~cdp_bridge.constants.REDIS_TIMEOUT`): without a
breaker every page would pay it for every cache read and every limit. After one failed
call the guard skips Redis for ``CDP_REDIS_PAUSE_SECONDS`` (10 by default), then
lets one call through to try again: a hung Redis costs one timeout per pause, not one
per request. Meanwhile caches miss and limits are skipped (they fail open, as
documented), with one WARNING per episode and ``cdp_breaker_open{client="redis"}`` at 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from .api_calls import CircuitBreaker

log = logging.getLogger("cdp_bridge.redis")

T = TypeVar("T")


class RedisGuard:
    """One app's breaker for its shared Redis; ``call`` runs a Redis call, or says it was skipped."""

    def __init__(self, pause_seconds: float) -> None:
        self.breaker = CircuitBreaker(1, pause_seconds, client="redis", what="Redis", api="the shared cache or rate-limit"
                                      " storage", without="caches miss and rate limits are skipped", log=log)

    def call(self, what: Callable[[], T], errors: tuple[type[BaseException], ...], skipped: T) -> T:
        """``what()``'s answer; ``skipped`` when the breaker is open or the call failed with
        one of ``errors`` (which opens it)."""
        if not self.breaker.allows():
            return skipped
        try:
            found = what()
        except errors as exc:
            # The class name only: a Redis error's text may quote its URL, password and all.
            self.breaker.failed(type(exc).__name__)
            return skipped
        self.breaker.succeeded()
        return found
