"""Rate limits that hold across processes and hosts, kept by Flask-Limiter (SPEC section 12).

Three limits, each a moving window of one minute: events a visitor and events a client
address may post to hybrid's ``POST /cdp/track``, and failed authentications a client
address may make at the webhook. Their counts live in Flask-Limiter's storage:
``CDP_RATE_LIMIT_STORAGE_URI`` (``memory://``, each process its own; ``redis://…``, one
count for a fleet), or the storage of the host's own ``Limiter`` when the app already has
one (made before ``cdp.init_app``).

The views ask after their own checks (a cross-origin post, or good credentials, is never
counted), through the limiter's strategy (``Limiter.limiter``, ``limits``' public
``hit``), so each answer is the endpoint's own JSON. A storage that cannot be reached
never fails a request: the limits are skipped (they fail open), with one WARNING per
episode; the app's :class:`~cdp_bridge.redis_guard.RedisGuard` skips a storage that
failed for a while, so a hung Redis costs one timeout per pause, not one per request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import RateLimitItem, parse

from .constants import REDIS_TIMEOUT, TRACK_EVENTS_PER_MINUTE
from .errors import ConfigurationError
from .metrics import RATE_LIMITED
from .redis_guard import RedisGuard
from .settings import CDPSettings

log = logging.getLogger("cdp_bridge.rate_limits")

_REDIS_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster", "valkey", "valkeys")


@dataclass(frozen=True)
class Refusal:
    """A request over a limit: what to say, and when to come back."""

    message: str
    retry_after: int


class RateLimits:
    """One app's limits, on its (or the host's) Flask-Limiter."""

    def __init__(self, limiter: Limiter | None, settings: CDPSettings, guard: RedisGuard) -> None:
        #: ``None`` when the host's Limiter is turned off (``RATELIMIT_ENABLED = False``).
        self.limiter = limiter
        self.track_visitor = parse(f"{TRACK_EVENTS_PER_MINUTE}/minute")
        self.track_address = parse(f"{settings.tracking.address_limit_per_minute}/minute")
        self.webhook_failures = parse(f"{settings.webhook.auth_failures_per_minute}/minute")
        self._guard = guard

    def track(self, address: str, visitor_id: str | None, endpoint: str = "track") -> Refusal | None:
        """Count one event posted to ``/cdp/track`` (or sent by ``/cdp/click``: ``endpoint``
        labels the metric); a refusal when the address or the visitor is over its limit.
        Both endpoints send events to Raptor, so they share the counts."""
        return (self._hit(self.track_address, "cdp_track_address", address, endpoint,
                          f"at most {self.track_address.amount} events a minute per client address")
                or (self._hit(self.track_visitor, "cdp_track_visitor", visitor_id, endpoint,
                              f"at most {self.track_visitor.amount} events a minute per visitor")
                    if visitor_id else None))

    def failed_authentication(self, address: str) -> Refusal | None:
        """Count one failed webhook authentication; a refusal once the address made too many."""
        return self._hit(self.webhook_failures, "cdp_webhook_auth_failures", address, "webhook",
                         f"at most {self.webhook_failures.amount} failed authentications a minute per client address")

    def _hit(self, item: RateLimitItem, scope: str, key: str, endpoint: str, message: str) -> Refusal | None:
        if self.limiter is None:
            return None
        strategy = self.limiter.limiter

        def hit() -> float | None:
            """``None`` when admitted, else when the window lets the key in again."""
            if strategy.hit(item, scope, key):
                return None
            return float(strategy.get_window_stats(item, scope, key).reset_time)

        # Each storage has its own errors; none may fail a request.
        reset_at = self._guard.call(hit, (Exception,), None)
        if reset_at is None:
            return None
        RATE_LIMITED.labels(endpoint).inc()
        return Refusal(message, max(1, math.ceil(reset_at - time.time())))


def limiter_for(app: Flask, storage_uri: str) -> Limiter | None:
    """The host's Limiter if the app has one, else one of cdp_bridge's own on
    ``storage_uri``; ``None`` when the host turned Flask-Limiter off (``RATELIMIT_ENABLED``).

    cdp_bridge's own is configured through a Flask app of its own, never the host's: on
    the host's app it would add three hooks to every request of the site (for limits it
    never declares there, as the views ask the strategy themselves), and take the host's
    ``RATELIMIT_*`` settings, meant for the host's own Limiter, as its own.
    """
    if app.config.get("RATELIMIT_ENABLED") is False:  # Flask-Limiter's own switch: the host turned limits off
        return None
    existing = [limiter for limiter in app.extensions.get("limiter", ()) if isinstance(limiter, Limiter)]
    if existing:
        host = existing[0]
        return host if host.enabled and host.initialized else None
    scheme = storage_uri.partition("://")[0]
    options: dict[str, Any] = {}
    if scheme in _REDIS_SCHEMES:
        options = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT}
    try:
        limiter = Limiter(get_remote_address, storage_uri=storage_uri, storage_options=options,
                          strategy="moving-window", default_limits=[], application_limits=[])
        limiter.init_app(Flask("cdp_bridge.rate_limits"))
    except Exception as exc:  # noqa: BLE001 - limits' ConfigurationError (a missing client library) among them
        # The message may quote the URI, password and all: name the setting only.
        raise ConfigurationError(f"CDP_RATE_LIMIT_STORAGE_URI: its storage cannot be used ({type(exc).__name__});"
                                 " a redis:// URI needs pip install 'cdp_bridge[redis]'") from None
    return limiter
