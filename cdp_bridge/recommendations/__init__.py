"""Raptor's recommendation blocks as Jinja helpers (SPEC section 11).

``client`` asks Raptor's Recommendations API for a module's ids (``answer`` reads them,
tolerantly); ``service`` caches them per module and parameters on the shared
:mod:`cdp_bridge.api_calls`; the page turns them into the site's own records through the
host's ``@cdp.recommendation_loader(kind)``.
"""

from .answer import Recommendation, parse_recommendations
from .client import RecommendationsClient, RecommendationsFailure
from .service import RecommendationsService

__all__ = ["Recommendation", "RecommendationsClient", "RecommendationsFailure", "RecommendationsService",
           "parse_recommendations"]
