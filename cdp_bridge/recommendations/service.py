"""A module's recommendations for some parameters: cached per module and parameters, asked
once at a time per key, paused by a circuit breaker while the API fails, and never an
error for the page (none, so it renders the site's fallback)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import quote, urlencode

from ..api_calls import Cache, CachedCalls, CircuitBreaker
from ..constants import RECOMMENDATIONS_CACHE_SIZE
from ..metrics import RECOMMENDATIONS_API_CALLS
from ..model import RecommendationModule
from .answer import Recommendation, first_items, recommendation_from_cache
from .client import RecommendationsClient


class RecommendationsService:
    """One app's recommendations: the client, its cache and its breaker."""

    def __init__(self, client: RecommendationsClient, breaker: CircuitBreaker, ttl: int,
                 shared_cache: Callable[[], Cache | None] = lambda: None) -> None:
        self.client = client
        self.calls: CachedCalls[tuple[Recommendation, ...]] = CachedCalls(
            breaker, ttl=ttl, wait_seconds=client.timeout + 1, size=RECOMMENDATIONS_CACHE_SIZE,
            calls=RECOMMENDATIONS_API_CALLS, shared_cache=shared_cache,
            encode=lambda found: [[r.id, r.variant, r.priority, r.created] for r in found], decode=_from_cache)

    def recommend(self, module: RecommendationModule, count: int, parameters: Mapping[str, str]) -> tuple[Recommendation, ...]:
        """The module's first ``count`` items for these query parameters (an answer of more
        is cut: Raptor was asked for ``count``); none when the API cannot answer."""
        return self.calls.get(cache_key(self.client, module, count, parameters),
                              lambda: first_items(self.client.recommend(module.method, count, parameters,
                                                                        split_variants=module.splits_variants), count), ())


def cache_key(client: RecommendationsClient, module: RecommendationModule, count: int, parameters: Mapping[str, str]) -> str:
    """One key per everything the answer depends on: the API's URL and account (two sites
    may share one cache), the module, its method, the count and the parameters (each
    percent-encoded: a key any cache takes)."""
    return (f"cdp_bridge:recommendations:{quote(client.base_url, safe='')}:{quote(client.account_number, safe='')}:"
            f"{module.name}:{module.method}:{count}:{urlencode(sorted(parameters.items()))}")


def _from_cache(rows: object) -> tuple[Recommendation, ...]:
    if not isinstance(rows, list):
        raise TypeError("expected a list of recommendations")
    return tuple(recommendation_from_cache(row) for row in rows)
