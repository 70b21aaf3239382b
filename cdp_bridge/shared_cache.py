"""The cache every process and host shares, from one setting: ``CDP_CACHE_URL=redis://…``.

cachelib's ``RedisCache`` (the backend Flask-Caching uses), made never to fail a request:
when Redis cannot be reached, a read is a miss and a write is skipped, so requests go to
the API and pages still render, with one WARNING when the outage starts and one INFO line
when Redis answers again. The ``redis`` client is an extra
(``pip install cdp_bridge[redis]``): a single host needs none of this.
"""

from __future__ import annotations

import logging
from typing import Any

from cachelib import RedisCache

from .constants import REDIS_TIMEOUT
from .errors import ConfigurationError
from .outage import Outage

log = logging.getLogger("cdp_bridge.cache")



class SharedCache:
    """``get``/``set`` on Redis, as ``@cdp.visitor_segments_cache`` expects, that never raise."""

    def __init__(self, url: str, default_timeout: int, key_prefix: str = "cdp_bridge:") -> None:
        try:
            import redis
        except ImportError:
            raise ConfigurationError("CDP_CACHE_URL needs the redis client: pip install 'cdp_bridge[redis]'") from None
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        client = redis.Redis.from_url(url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT)
        self._cache = RedisCache(host=client, key_prefix=key_prefix, default_timeout=default_timeout)
        self._outage = Outage(log, "shared cache: Redis cannot be reached (%s); requests go to the API until it answers"
                                   " again (one line per episode)", "shared cache: Redis answers again")

    def get(self, key: str) -> Any:
        try:
            value = self._cache.get(key)
        except self._errors as exc:
            self._outage.failed(exc)
            return None
        self._outage.answered()
        return value

    def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
        try:
            done = bool(self._cache.set(key, value, timeout=timeout))
        except self._errors as exc:
            self._outage.failed(exc)
            return False
        self._outage.answered()
        return done
