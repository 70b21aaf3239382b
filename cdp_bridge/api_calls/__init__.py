"""What every call to one of Raptor's APIs made while a page waits has in common: a cache,
one call at a time per key, a circuit breaker, and a failure that renders the page's
fallback. The visitor-segments client (SPEC section 9) and the recommendations client
(section 11) are both built on it; each keeps only its request and its answer, and is
made from its settings section (an :class:`~cdp_bridge.settings.OutsideApi`) by its
package's ``service_from(section, …)``."""

from .breaker import CircuitBreaker, breaker_for
from .cached import ApiFailure, Cache, CachedCalls

__all__ = ["ApiFailure", "Cache", "CachedCalls", "CircuitBreaker", "breaker_for"]
