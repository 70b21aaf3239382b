"""The cache every process and host shares, from one setting: ``CDP_CACHE_URL=redis://…``.

Plain ``GET`` and ``SET … EX`` of text on Redis, never pickle: what cdp_bridge caches is
JSON made by :mod:`cdp_bridge.api_calls.cached`, and a value someone else put under one
of its keys is only ever read as text (then refused there, as a miss). cachelib's
``RedisCache`` unpickles what it reads, so a value planted in a shared Redis would run
code in every web process.

It never fails a request: behind the app's :class:`~cdp_bridge.redis_guard.RedisGuard`,
a Redis that cannot be reached (or hangs) makes reads misses and skips writes, so
requests go to the API and pages still render. The ``redis`` client is an extra
(``pip install cdp_bridge[redis]``): a single host needs none of this.
"""

from __future__ import annotations

import time

from .constants import REDIS_TIMEOUT
from .errors import ConfigurationError
from .redis_guard import RedisGuard

#: Every key cdp_bridge writes to the shared Redis starts with this.
KEY_PREFIX = "cdp_bridge:"


class SharedCache:
    """``get``/``set`` of text on Redis, as the API clients' cache expects, that never raise."""

    def __init__(self, url: str, default_timeout: int, guard: RedisGuard, key_prefix: str = KEY_PREFIX) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigurationError("CDP_CACHE_URL needs the redis client: pip install 'cdp_bridge[redis]'") from None
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self._client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        self._prefix = key_prefix
        self._default_timeout = default_timeout
        self._guard = guard

    def ping(self) -> float:
        """Seconds Redis took to answer ``PING``, asked past the breaker (``flask cdp
        check`` wants to know now); raises what the client raises."""
        started = time.monotonic()
        self._client.ping()
        return time.monotonic() - started

    def get(self, key: str) -> bytes | None:
        """The value's bytes as Redis holds them (``None``: a miss, or Redis skipped)."""
        def read() -> bytes | None:
            found = self._client.get(self._prefix + key)
            return found if isinstance(found, bytes) else None

        return self._guard.call(read, self._errors, None)

    def set(self, key: str, value: str, timeout: int | None = None) -> bool:
        """Keep ``value`` (text) for ``timeout`` seconds (the default TTL when not given)."""
        seconds = timeout or self._default_timeout
        def write() -> bool:
            return bool(self._client.set(self._prefix + key, value.encode("utf-8"), ex=seconds))

        return self._guard.call(write, self._errors, False)
