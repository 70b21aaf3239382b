"""A visitor's segments: the CDP API's answer, cached, asked once at a time per visitor,
and never allowed to break a page.

The cache is any object with ``get(key)`` and ``set(key, value, timeout=seconds)`` (a
Flask-Caching backend on Redis lets every gunicorn worker share it); by default a
bounded in-process cachelib ``SimpleCache``. Only answers are cached, never failures,
so an outage does not outlast itself; the circuit breaker spares the API meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from cachelib import SimpleCache

from ..constants import VISITOR_SEGMENTS_CACHE_SIZE
from ..metrics import MEMBERSHIP_API_CALLS, MEMBERSHIP_API_SECONDS
from .breaker import CircuitBreaker
from .client import Membership, MembershipClient, MembershipFailure

log = logging.getLogger("cdp_bridge.membership")


class SegmentsCache(Protocol):
    """What ``@cdp.visitor_segments_cache`` accepts: Flask-Caching's and cachelib's API."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any: ...


def default_cache(ttl: int) -> SegmentsCache:
    return SimpleCache(threshold=VISITOR_SEGMENTS_CACHE_SIZE, default_timeout=ttl)


class VisitorSegmentsService:
    """One app's visitor segments: cache, then one call per visitor at a time, then the API.

    ``shared_cache`` returns the host's cache (``@cdp.visitor_segments_cache``, which may
    be registered after the service is made), or ``None`` for the process's own."""

    def __init__(self, client: MembershipClient, breaker: CircuitBreaker, ttl: int,
                 shared_cache: Callable[[], SegmentsCache | None] = lambda: None) -> None:
        self.client = client
        self.breaker = breaker
        self.ttl = ttl
        self._shared_cache = shared_cache
        self._own_cache = default_cache(ttl) if ttl > 0 else None
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[tuple[Membership, ...]]] = {}

    @property
    def cache(self) -> SegmentsCache | None:
        """The host's cache, else this process's own; none with a TTL of 0."""
        if self.ttl <= 0:
            return None
        shared = self._shared_cache()
        return shared if shared is not None else self._own_cache

    def memberships(self, visitor_id: str) -> tuple[Membership, ...]:
        """The visitor's memberships; none when the API cannot answer now."""
        key = f"cdp_bridge:visitor_segments:{self.client.activation_id}:{visitor_id}"
        cache = self.cache
        if cache is not None:
            cached = cache.get(key)
            if cached is not None:
                return tuple(Membership(*pair) for pair in cached)
        with self._lock:
            pending = self._in_flight.get(key)
            if pending is None:
                pending = self._in_flight[key] = Future()
                asking = True
            else:
                asking = False
        if not asking:  # another request of this visitor is asking: share its answer
            try:
                return pending.result(timeout=self.client.timeout + 1)
            except Exception:  # noqa: BLE001 - its failure is logged by the request that asked
                return ()
        try:
            found = self._ask(key, visitor_id, cache)
            pending.set_result(found)
            return found
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        finally:
            with self._lock:
                del self._in_flight[key]

    def _ask(self, key: str, visitor_id: str, cache: SegmentsCache | None) -> tuple[Membership, ...]:
        if not self.breaker.allows():
            return ()
        started = time.monotonic()
        try:
            found = self.client.memberships(visitor_id)
        except MembershipFailure as failure:
            _count_call(failure.reason, started)
            if failure.reason != "not_found":
                self.breaker.failed(str(failure))
                return ()
            found = ()  # a visitor the CDP does not know (yet) is in no audience: an answer
        else:
            _count_call("ok", started)
        self.breaker.succeeded()
        if cache is not None:
            cache.set(key, tuple((m.id, m.name) for m in found), timeout=self.ttl)
        return found


def _count_call(outcome: str, started: float) -> None:
    """``cdp_membership_api_calls_total`` by outcome (``ok`` or the failure's reason) and its latency."""
    MEMBERSHIP_API_CALLS.labels(outcome).inc()
    MEMBERSHIP_API_SECONDS.observe(time.monotonic() - started)
