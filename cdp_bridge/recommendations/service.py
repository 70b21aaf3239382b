"""A module's recommendations for some parameters: cached per module and parameters, asked
once at a time per key, paused by a circuit breaker while the API fails, and never an
error for the page (none, so it renders the site's fallback)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from ..api_calls import Cache, CachedCalls, CircuitBreaker
from ..constants import RECOMMENDATIONS_CACHE_SIZE, RECOMMENDATIONS_FAILURES_BEFORE_PAUSE, RECOMMENDATIONS_PAUSE_SECONDS
from ..metrics import RECOMMENDATIONS_API_CALLS
from ..model import RecommendationModule
from .answer import Recommendation
from .client import RecommendationsClient

log = logging.getLogger("cdp_bridge.recommendations")


class RecommendationsService:
    """One app's recommendations: the client, its cache and its breaker."""

    def __init__(self, client: RecommendationsClient, ttl: int,
                 shared_cache: Callable[[], Cache | None] = lambda: None) -> None:
        self.client = client
        breaker = CircuitBreaker(RECOMMENDATIONS_FAILURES_BEFORE_PAUSE, RECOMMENDATIONS_PAUSE_SECONDS,
                                 client="recommendations", what="recommendations", api="the Recommendations API",
                                 without="recommendation blocks show the site's own fallback", log=log)
        self.calls: CachedCalls[tuple[Recommendation, ...]] = CachedCalls(
            breaker, ttl=ttl, wait_seconds=client.timeout + 1, size=RECOMMENDATIONS_CACHE_SIZE,
            calls=RECOMMENDATIONS_API_CALLS, shared_cache=shared_cache,
            encode=lambda found: tuple((r.id, r.variant, r.priority, r.created) for r in found),
            decode=lambda rows: tuple(Recommendation(*row) for row in rows))

    def recommend(self, module: RecommendationModule, count: int, parameters: Mapping[str, str]) -> tuple[Recommendation, ...]:
        """The module's recommendations for these query parameters; none when the API cannot answer."""
        return self.calls.get(cache_key(module, count, parameters),
                              lambda: self.client.recommend(module.method, count, parameters,
                                                            split_variants=module.kind == "product"), ())


def cache_key(module: RecommendationModule, count: int, parameters: Mapping[str, str]) -> str:
    """One key per module, method, count and parameters (each value at most 255
    characters, percent-encoded: a key any cache takes)."""
    return f"cdp_bridge:recommendations:{module.name}:{module.method}:{count}:{urlencode(sorted(parameters.items()))}"
