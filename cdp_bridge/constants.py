"""Fixed names and sizes of cdp_bridge: cookies, paths, limits, the tracking fields'
p-numbers. The settings (their keys, defaults and docs) live in ``settings.py``.
"""

from __future__ import annotations

#: Visitors whose memberships the in-process cache keeps at most.
VISITOR_SEGMENTS_CACHE_SIZE = 10_000
#: Seconds a call to Redis (the shared cache, the rate limits) may wait: a cache slower than
#: the API it saves, or a limit slower than the request it guards, is worse than none.
REDIS_TIMEOUT = 0.25
#: Answers of the Recommendations API kept per process (per module and parameters).
RECOMMENDATIONS_CACHE_SIZE = 10_000
#: The recommendation blocks' checked arguments kept per process (emptied when full).
RECOMMENDATION_CALLS_KEPT = 10_000
#: Calls in a row that fail before calls to the Recommendations API pause, and for how long.
RECOMMENDATIONS_FAILURES_BEFORE_PAUSE = 3
RECOMMENDATIONS_PAUSE_SECONDS = 30
#: Raptor's first-party visitor cookie (a UUID), the id the CDP API is asked with.
VISITOR_COOKIE = "rsa"
#: Raptor's session cookie (a UUID), 20 minutes, sliding.
SESSION_COOKIE = "rsaSession"
SESSION_COOKIE_MINUTES = 20
#: Raptor's email links land with reaid and/or ruid; the server keeps them (SPEC sections
#: 13, 14): ``rsaReaId`` as Raptor's server-side template names it, the older spelling read too.
REAID_COOKIE = "rsaReaId"
OLD_REAID_COOKIE = "rsaReaid"
RUID_COOKIE = "rsaRuid"
#: Every cookie cdp_bridge may set on a visitor: a withdrawn consent expires them all.
VISITOR_COOKIES = (VISITOR_COOKIE, SESSION_COOKIE, RUID_COOKIE, REAID_COOKIE, OLD_REAID_COOKIE)
CAMPAIGN_COOKIE_DAYS = 365
#: The landing page's campaign parameters, sent with that page's events.
UTM_PARAMETERS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
#: Seconds a DeleteUser call to Raptor's GDPR API may take, and the largest answer read.
GDPR_API_TIMEOUT = 10.0
GDPR_API_MAX_BYTES = 64 * 1024
#: Events waiting to be sent by a process's sender; beyond it the oldest are dropped.
SERVER_TRACKING_QUEUE_SIZE = 10_000
SERVER_TRACKING_TIMEOUT = 1.0
#: The hybrid mode's endpoint inside the ``cdp`` blueprint, its largest body and its rate per visitor.
TRACK_PATH = "/track"
#: Server mode: a recommendation link goes through here, which sends its itemclick.
CLICK_PATH = "/click"
METRICS_PATH = "/metrics"
TRACK_MAX_BYTES = 8 * 1024
TRACK_EVENTS_PER_MINUTE = 120

#: Longest segment group / segment identifier and user id, in characters.
MAX_IDENTIFIER_LENGTH = 255

#: Default p-number of each tracking field (Raptor's defaults, SPEC section 5).
DEFAULT_TRACKING_PARAMETERS: dict[str, str] = {
    "event_type": "p1",
    "id": "p2",
    "name": "p3",
    "category_path": "p4",
    "subtotal": "p5",
    "currency": "p6",
    "user_id": "p7",
    "brand": "p8",
    "basket_content": "p10",
    "basket_id": "p11",
    "price": "p12",
    "quantity": "p13",
    "in_stock": "p15",
    "master_id": "p18",
    "order_id": "p21",
    # An itemclick's recommendation module (Raptor's "am"): what credits a module with its clicks.
    "module": "am",
}

#: The webhook's path inside the ``cdp`` blueprint.
WEBHOOK_PATH = "/webhook"

#: Where the extension keeps its per-app state: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "cdp"

PROTECTED_GROUP_MESSAGE = "Cannot modify protected segment group"
