"""A visitor's segments: the CDP API's answer, cached, asked once at a time per visitor,
and never allowed to break a page (the shared :mod:`cdp_bridge.api_calls`)."""

from __future__ import annotations

from collections.abc import Callable

from ..api_calls import Cache, CachedCalls, CircuitBreaker, breaker_for
from ..constants import VISITOR_SEGMENTS_CACHE_SIZE
from ..metrics import MEMBERSHIP_API_CALLS, MEMBERSHIP_API_SECONDS
from ..settings import MembershipApi
from .client import Membership, MembershipClient, membership_from_entry

#: What ``@cdp.visitor_segments_cache`` accepts (the name it had before the recommendations shared it).
SegmentsCache = Cache


class VisitorSegmentsService:
    """One app's visitor segments: cache, then one call per visitor at a time, then the API.

    ``shared_cache`` returns the host's cache (``@cdp.visitor_segments_cache``, which may
    be registered after the service is made), or ``None`` for the process's own."""

    def __init__(self, client: MembershipClient, breaker: CircuitBreaker, ttl: int,
                 shared_cache: Callable[[], Cache | None] = lambda: None) -> None:
        self.client = client
        self.breaker = breaker
        self.ttl = ttl
        # A visitor the CDP does not know (yet) is in no audience: an answer, cached.
        self.calls: CachedCalls[tuple[Membership, ...]] = CachedCalls(
            breaker, ttl=ttl, wait_seconds=client.timeout + 1, size=VISITOR_SEGMENTS_CACHE_SIZE,
            calls=MEMBERSHIP_API_CALLS, seconds=MEMBERSHIP_API_SECONDS, shared_cache=shared_cache,
            encode=lambda found: [{"id": m.id, "name": m.name} for m in found], decode=memberships_from_cache,
            answered_by=frozenset({"not_found"}))

    @property
    def cache(self) -> Cache | None:
        """The host's cache, else this process's own; none with a TTL of 0."""
        return self.calls.cache

    def memberships(self, visitor_id: str) -> tuple[Membership, ...]:
        """The visitor's memberships; none when the API cannot answer now."""
        key = f"cdp_bridge:visitor_segments:{self.client.url}:{self.client.activation_id}:{visitor_id}"
        return self.calls.get(key, lambda: self.client.memberships(visitor_id), ())


def memberships_from_cache(entries: object) -> tuple[Membership, ...]:
    """Cached ``[{"id", "name"}, …]`` as memberships, read by the API answer's own entry
    parser; a ``ValueError`` or ``TypeError`` for anything else."""
    if not isinstance(entries, list):
        raise TypeError("expected a list of memberships")
    found = []
    for entry in entries:
        membership = membership_from_entry(entry)
        if membership is None:
            raise TypeError("a membership without an id")
        found.append(membership)
    return tuple(found)


def service_from(api: MembershipApi, shared_cache: Callable[[], Cache | None]) -> VisitorSegmentsService | None:
    """The visitor segments' service made from its settings section, or ``None`` until its
    activation and key are configured."""
    if api.activation_id is None or api.key is None:
        return None
    client = MembershipClient(api.url, api.activation_id, api.key, api.timeout, api.max_bytes)
    breaker = breaker_for(api, what="visitor segments", api_name="the CDP API", without="visitors get no segments")
    return VisitorSegmentsService(client, breaker, api.cache_ttl, shared_cache=shared_cache)
