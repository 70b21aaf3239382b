"""An API's answers, cached, asked once at a time per key, and never allowed to break a page.

The cache is any object with ``get(key)`` and ``set(key, value, timeout=seconds)``: the
host's (a Flask-Caching backend), the shared Redis cache of ``CDP_CACHE_URL``, or by
default a bounded in-process cachelib ``SimpleCache``. Only answers are cached, never
failures, so an outage does not outlast itself; the circuit breaker spares the API
meanwhile. While one request asks for a key, the others wanting it wait for its answer
instead of asking too.

What is cached is JSON text, ``{"v": CACHE_FORMAT, "value": …}``, and it is checked when
read: a cache may be shared with other code, other versions and other people, so a value
cdp_bridge did not write in this format (a foreign one, a truncated one, an older
format) is a miss, one WARNING per episode, and is overwritten by the API's answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, Protocol, TypeVar

from cachelib import SimpleCache
from cachelib.serializers import SimpleSerializer
from prometheus_client import Counter, Histogram

from ..outage import Outage
from .breaker import CircuitBreaker

T = TypeVar("T")

log = logging.getLogger("cdp_bridge.cache")

#: The format of the values cdp_bridge caches; a value of another format is a miss.
CACHE_FORMAT = 1


#: Foreign values, however many of the caches read them, make one WARNING per episode.
FOREIGN_VALUES = Outage(log, "cache: a value under one of cdp_bridge's keys is not one it wrote (%s); read as a miss and"
                             " overwritten (one line per episode)", "cache: the values read are cdp_bridge's again")


class _AsIs(SimpleSerializer):
    """cachelib's serializer, keeping values as they are (see ``CachedCalls``)."""

    def dumps(self, value: Any, protocol: int = 0) -> Any:
        return value

    def loads(self, bvalue: Any) -> Any:
        return bvalue


class UnreadableValue(ValueError):
    """A cached value that is not one cdp_bridge wrote in this format."""


class Cache(Protocol):
    """What a cache must offer: Flask-Caching's and cachelib's API."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, timeout: int | None = None) -> Any: ...


class ApiFailure(Exception):
    """An API gave no usable answer; ``reason`` names the kind (``timeout``, ``server_error``…)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class CachedCalls(Generic[T]):
    """Answers of one API by key: cache, then one call at a time per key, then the API.

    ``call()`` returns an answer or raises :class:`ApiFailure`; a failure whose reason is in
    ``answered_by`` is an answer all the same (the fallback, cached): a visitor the CDP does
    not know is in no audience. Values are cached as JSON of what ``encode`` makes (lists,
    strings and numbers) and read back with ``decode``, which raises :class:`ValueError`
    (or :class:`TypeError`) for anything not of that shape. Each call is counted in
    ``calls`` by outcome (``ok`` or the failure's reason), and timed in ``seconds`` if given.
    """

    def __init__(self, breaker: CircuitBreaker, *, ttl: int, wait_seconds: float, size: int, calls: Counter,
                 seconds: Histogram | None = None, shared_cache: Callable[[], Cache | None] = lambda: None,
                 encode: Callable[[T], Any] = lambda value: value, decode: Callable[[Any], T] = lambda value: value,
                 answered_by: frozenset[str] = frozenset()) -> None:
        self.breaker = breaker
        self.ttl = ttl
        self._wait_seconds = wait_seconds
        self._calls, self._seconds = calls, seconds
        self._shared_cache = shared_cache
        self._own_cache = SimpleCache(threshold=size, default_timeout=ttl) if ttl > 0 else None
        if self._own_cache is not None:
            # The process's own cache keeps the answer itself (immutable tuples): no pickle
            # and no JSON to undo on each hit; only a shared cache holds checked JSON text.
            self._own_cache.serializer = _AsIs()
        self._encode, self._decode = encode, decode
        self._answered_by = answered_by
        self._lock = threading.Lock()
        self._in_flight: dict[str, Future[T]] = {}

    @property
    def cache(self) -> Cache | None:
        """The host's or the shared cache, else this process's own; none with a TTL of 0."""
        if self.ttl <= 0:
            return None
        shared = self._shared_cache()
        return shared if shared is not None else self._own_cache

    def get(self, key: str, call: Callable[[], T], fallback: T) -> T:
        """The answer for ``key``: cached, or shared with the request already asking, or
        asked now; ``fallback`` when the API cannot answer (or the breaker pauses calls)."""
        cache = self.cache
        if cache is not None:
            cached = cache.get(key)
            if cached is not None and cache is self._own_cache:
                found_here: T = cached
                return found_here
            if cached is not None:
                try:
                    found = self._read(cached)
                except (ValueError, TypeError) as exc:  # UnreadableValue among them
                    FOREIGN_VALUES.failed(exc)
                else:
                    FOREIGN_VALUES.answered()
                    return found
        with self._lock:
            pending = self._in_flight.get(key)
            asking = pending is None
            if pending is None:
                pending = self._in_flight[key] = Future()
        if not asking:  # another request is asking for this key: share its answer
            try:
                return pending.result(timeout=self._wait_seconds)
            except Exception:  # noqa: BLE001 - its failure is logged by the request that asked
                return fallback
        try:
            found = self._ask(key, call, fallback, cache)
            pending.set_result(found)
            return found
        except BaseException as exc:
            pending.set_exception(exc)
            raise
        finally:
            with self._lock:
                del self._in_flight[key]

    def _ask(self, key: str, call: Callable[[], T], fallback: T, cache: Cache | None) -> T:
        if not self.breaker.allows():
            return fallback
        started = time.monotonic()
        try:
            found = call()
        except ApiFailure as failure:
            self._count(failure.reason, started)
            if failure.reason not in self._answered_by:
                self.breaker.failed(str(failure))
                return fallback
            found = fallback
        else:
            self._count("ok", started)
        self.breaker.succeeded()
        if cache is not None:
            cache.set(key, found if cache is self._own_cache else self._written(found), timeout=self.ttl)
        return found

    def _written(self, found: T) -> str:
        return json.dumps({"v": CACHE_FORMAT, "value": self._encode(found)}, separators=(",", ":"))

    def _read(self, cached: object) -> T:
        """The answer a cached value holds; :class:`UnreadableValue` (or ``ValueError``,
        ``TypeError``) for a value cdp_bridge did not write in this format."""
        if not isinstance(cached, str | bytes):
            raise UnreadableValue(f"not text but {type(cached).__name__}")
        document = json.loads(cached)  # bytes that are not UTF-8 raise UnicodeDecodeError, a ValueError
        if not isinstance(document, dict) or document.get("v") != CACHE_FORMAT or "value" not in document:
            raise UnreadableValue(f"not format {CACHE_FORMAT}")
        return self._decode(document["value"])

    def _count(self, outcome: str, started: float) -> None:
        self._calls.labels(outcome).inc()
        if self._seconds is not None:
            self._seconds.observe(time.monotonic() - started)
