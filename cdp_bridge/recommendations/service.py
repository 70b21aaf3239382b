"""A module's recommendations for some parameters: cached per module and parameters, asked
once at a time per key, paused by a circuit breaker while the API fails, and never an
error for the page (none, so it renders the site's fallback)."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from urllib.parse import quote

from ..api_calls import Cache, CachedCalls, CircuitBreaker, breaker_for
from ..constants import RECOMMENDATIONS_CACHE_SIZE
from ..metrics import RECOMMENDATIONS_API_CALLS
from ..model import RecommendationModule
from ..settings import RecommendationsApi
from .answer import first_ids, id_from_cache
from .client import RecommendationsClient

#: A block's module, count, query parameters and the answer's cache key, its arguments checked.
CheckedCall = tuple[RecommendationModule, int, dict[str, str], str]


class RecommendationsService:
    """One app's recommendations: the client, its cache and its breaker."""

    def __init__(self, client: RecommendationsClient, breaker: CircuitBreaker, ttl: int,
                 shared_cache: Callable[[], Cache | None] = lambda: None) -> None:
        self.client = client
        self.calls: CachedCalls[tuple[str, ...]] = CachedCalls(
            breaker, ttl=ttl, wait_seconds=client.timeout + 1, size=RECOMMENDATIONS_CACHE_SIZE,
            calls=RECOMMENDATIONS_API_CALLS, shared_cache=shared_cache, encode=list, decode=_ids_from_cache)
        #: The page helpers' arguments, already checked, by the arguments as given: each
        #: block's (module, count, query, cache key), for modules whose query the
        #: arguments alone make (the templates' own module names and product ids; bounded
        #: by :data:`~cdp_bridge.constants.RECOMMENDATION_CALLS_KEPT`). A block checked
        #: its arguments and made its key on every page: a third of its cost.
        self.checked_calls: dict[Hashable, CheckedCall] = {}

    def key(self, module: RecommendationModule, count: int, parameters: Mapping[str, str]) -> str:
        """The answer's cache key (:func:`cache_key`), which a page also keeps its block by."""
        return cache_key(self.client, module, count, parameters)

    def recommend(self, module: RecommendationModule, count: int, parameters: Mapping[str, str], *,
                  key: str | None = None) -> tuple[str, ...]:
        """The ids of the module's first ``count`` items for these query parameters, in
        Raptor's order (an answer of more is cut: Raptor was asked for ``count``; a
        product's variants are one item); none when the API cannot answer. ``key``: the
        caller's :meth:`key` for the same arguments, not made twice."""
        return self.calls.get(key or self.key(module, count, parameters),
                              lambda: first_ids(self.client.recommend(module.method, count, parameters,
                                                                        split_variants=module.splits_variants), count), ())


def cache_key(client: RecommendationsClient, module: RecommendationModule, count: int, parameters: Mapping[str, str]) -> str:
    """One key per everything the answer depends on: the API's URL and account (two sites
    may share one cache), the module, its method, the count and the parameters (each
    percent-encoded: a key any cache takes)."""
    query = "&".join([f"{name}={_key_part(value)}" for name, value in sorted(parameters.items())])
    return f"{client.cache_key_prefix}:{module.name}:{module.method}:{count}:{query}"


#: A value that percent-encoding leaves as it is (most ids): used as it is, without ``quote``.
_PLAIN = re.compile(r"[A-Za-z0-9._~-]+")


def _key_part(value: str) -> str:
    return value if _PLAIN.fullmatch(value) else quote(value, safe="")


def _ids_from_cache(ids: object) -> tuple[str, ...]:
    if not isinstance(ids, list):
        raise TypeError("expected a list of ids")
    return tuple([id_from_cache(item_id) for item_id in ids])


def service_from(api: RecommendationsApi, account_number: str | None,
                 shared_cache: Callable[[], Cache | None]) -> RecommendationsService | None:
    """The recommendations' service made from its settings section, or ``None`` while no
    module is configured (the settings check requires the key and the account with one)."""
    if not api.modules or api.key is None or account_number is None:
        return None
    client = RecommendationsClient(api.url, account_number, api.key, api.timeout, api.max_bytes)
    breaker = breaker_for(api, what="recommendations", api_name="the Recommendations API",
                          without="recommendation blocks show the site's own fallback")
    return RecommendationsService(client, breaker, api.cache_ttl, shared_cache=shared_cache)
