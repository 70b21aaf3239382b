"""Every configuration key cdp_bridge reads, and its default, in one place.

The names are the external contract (SPEC section 2); the rest of the package refers to
these constants instead of spelling keys out.
"""

from __future__ import annotations

ACCOUNT_NUMBER = "CDP_ACCOUNT_NUMBER"
ACTIVATION_CLIENT_ID = "CDP_ACTIVATION_CLIENT_ID"
ACTIVATION_CLIENT_SECRET = "CDP_ACTIVATION_CLIENT_SECRET"
SEGMENT_GROUP_IDENTIFIER = "CDP_SEGMENT_GROUP_IDENTIFIER"
ACTIVATIONS = "CDP_ACTIVATIONS"
USER_STREAM_ID = "CDP_USER_STREAM_ID"
PRODUCT_STREAM_ID = "CDP_PRODUCT_STREAM_ID"
CONTENT_STREAM_ID = "CDP_CONTENT_STREAM_ID"
PRODUCT_STREAM_IDS = "CDP_PRODUCT_STREAM_IDS"
CONTENT_STREAM_IDS = "CDP_CONTENT_STREAM_IDS"
STREAM_API_URL = "CDP_STREAM_API_URL"
BULK_ASYNC_THRESHOLD = "CDP_BULK_ASYNC_THRESHOLD"
WEBHOOK_MAX_BYTES = "CDP_WEBHOOK_MAX_BYTES"
WEBHOOK_SIGNING_SECRETS = "CDP_WEBHOOK_SIGNING_SECRETS"
TRACKING_SCRIPT_URL = "CDP_TRACKING_SCRIPT_URL"
TRACKING_PARAMETERS = "CDP_TRACKING_PARAMETERS"
CONSENT_COOKIE = "CDP_CONSENT_COOKIE"
INLINE_WORKER = "CDP_INLINE_WORKER"
EXPORT_SCHEDULE = "CDP_EXPORT_SCHEDULE"
WORKER_LEASE_SECONDS = "CDP_WORKER_LEASE_SECONDS"
ADMIN_SITE_URL = "CDP_ADMIN_SITE_URL"
MEMBERSHIP_API_URL = "CDP_MEMBERSHIP_API_URL"
MEMBERSHIP_ACTIVATION_ID = "CDP_MEMBERSHIP_ACTIVATION_ID"
MEMBERSHIP_API_KEY = "CDP_MEMBERSHIP_API_KEY"
MEMBERSHIP_TIMEOUT = "CDP_MEMBERSHIP_TIMEOUT"
MEMBERSHIP_MAX_BYTES = "CDP_MEMBERSHIP_MAX_BYTES"
MEMBERSHIP_FAILURES_BEFORE_PAUSE = "CDP_MEMBERSHIP_FAILURES_BEFORE_PAUSE"
MEMBERSHIP_PAUSE_SECONDS = "CDP_MEMBERSHIP_PAUSE_SECONDS"
VISITOR_SEGMENTS_CACHE_TTL = "CDP_VISITOR_SEGMENTS_CACHE_TTL"
TRACKING_MODE = "CDP_TRACKING_MODE"
SERVER_TRACKING_URL = "CDP_SERVER_TRACKING_URL"
VISITOR_COOKIE_DAYS = "CDP_VISITOR_COOKIE_DAYS"
TRACK_ADDRESS_LIMIT_PER_MINUTE = "CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE"

#: Every key, in the order the README documents them.
ALL_KEYS: tuple[str, ...] = (
    ACCOUNT_NUMBER,
    ACTIVATION_CLIENT_ID,
    ACTIVATION_CLIENT_SECRET,
    SEGMENT_GROUP_IDENTIFIER,
    ACTIVATIONS,
    USER_STREAM_ID,
    PRODUCT_STREAM_ID,
    CONTENT_STREAM_ID,
    PRODUCT_STREAM_IDS,
    CONTENT_STREAM_IDS,
    STREAM_API_URL,
    BULK_ASYNC_THRESHOLD,
    WEBHOOK_MAX_BYTES,
    WEBHOOK_SIGNING_SECRETS,
    TRACKING_SCRIPT_URL,
    TRACKING_PARAMETERS,
    CONSENT_COOKIE,
    INLINE_WORKER,
    EXPORT_SCHEDULE,
    WORKER_LEASE_SECONDS,
    ADMIN_SITE_URL,
    MEMBERSHIP_API_URL,
    MEMBERSHIP_ACTIVATION_ID,
    MEMBERSHIP_API_KEY,
    MEMBERSHIP_TIMEOUT,
    MEMBERSHIP_MAX_BYTES,
    MEMBERSHIP_FAILURES_BEFORE_PAUSE,
    MEMBERSHIP_PAUSE_SECONDS,
    VISITOR_SEGMENTS_CACHE_TTL,
    TRACKING_MODE,
    SERVER_TRACKING_URL,
    VISITOR_COOKIE_DAYS,
    TRACK_ADDRESS_LIMIT_PER_MINUTE,
)

DEFAULT_STREAM_API_URL = "https://in.raptorsmartadvisor.com/stream"
DEFAULT_BULK_ASYNC_THRESHOLD = 100
DEFAULT_WEBHOOK_MAX_BYTES = 32 * 1024 * 1024
#: How long a worker's claim on a queued delivery lasts before another may take it over.
DEFAULT_WORKER_LEASE_SECONDS = 120
#: Where the back office's "back to the site" link points.
DEFAULT_ADMIN_SITE_URL = "/"
#: Raptor's CDP API, which answers a visitor's audience memberships (SPEC section 9).
DEFAULT_MEMBERSHIP_API_URL = "https://cdp-api.raptorsmartadvisor.com"
#: Ibexa's own default; a site may want less (see the README).
DEFAULT_MEMBERSHIP_TIMEOUT = 5.0
#: The largest membership answer read: a visitor is in a few audiences, not megabytes of them.
DEFAULT_MEMBERSHIP_MAX_BYTES = 1024 * 1024
#: Failed calls in a row after which calls pause, and for how long.
DEFAULT_MEMBERSHIP_FAILURES_BEFORE_PAUSE = 3
DEFAULT_MEMBERSHIP_PAUSE_SECONDS = 30
DEFAULT_VISITOR_SEGMENTS_CACHE_TTL = 300
#: Visitors whose memberships the in-process cache keeps at most.
VISITOR_SEGMENTS_CACHE_SIZE = 10_000
#: Raptor's first-party visitor cookie (a UUID), the id the CDP API is asked with.
VISITOR_COOKIE = "rsa"
#: Raptor's session cookie (a UUID), 20 minutes, sliding.
SESSION_COOKIE = "rsaSession"
SESSION_COOKIE_MINUTES = 20
DEFAULT_VISITOR_COOKIE_DAYS = 365
#: Where events go: the browser (Raptor's script), the site's server, or the browser through the site.
TRACKING_MODES = ("client", "server", "hybrid")
DEFAULT_TRACKING_MODE = "client"
DEFAULT_SERVER_TRACKING_URL = "https://t.raptorsmartadvisor.com"
#: Events waiting to be sent by a process's sender; beyond it the oldest are dropped.
SERVER_TRACKING_QUEUE_SIZE = 10_000
SERVER_TRACKING_TIMEOUT = 1.0
#: The hybrid mode's endpoint inside the ``cdp`` blueprint, its largest body and its rate per visitor.
TRACK_PATH = "/track"
TRACK_MAX_BYTES = 8 * 1024
TRACK_EVENTS_PER_MINUTE = 120
#: Events one client address may post to it a minute (every visitor behind that address together).
DEFAULT_TRACK_ADDRESS_LIMIT_PER_MINUTE = 600
DEFAULT_TRACKING_SCRIPT_URL = "https://deliver.raptorstatic.com/script/raptor-3.0.min.js"

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
}

#: The kinds of data export, as used in CDP_EXPORT_SCHEDULE and the stream-* commands.
EXPORT_KINDS: tuple[str, ...] = ("user", "product", "content")

#: The webhook's path inside the ``cdp`` blueprint.
WEBHOOK_PATH = "/webhook"

#: Where the extension keeps its per-app state: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "cdp"

PROTECTED_GROUP_MESSAGE = "Cannot modify protected segment group"
