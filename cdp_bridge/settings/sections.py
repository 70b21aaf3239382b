"""cdp_bridge's settings in sections: the webhook, tracking, the export, the queue workers,
the site-wide ones, and one section per outside API (its URL, key, timeout, cache TTL and
breaker).

Each section is a marshmallow schema of its ``CDP_*`` keys (each key's validation, one
default and its line in the docs, in one place) that loads into a frozen dataclass.
:func:`~cdp_bridge.settings.load_settings` loads every section from the same flat keys
and checks what spans sections. An outside API's section is an :class:`OutsideApi`, and
its package makes its client from that section alone; adding an API is its package, its
section here, and its docs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from cronsim import CronSim, CronSimError
from marshmallow import EXCLUDE, RAISE, Schema, fields, post_load, validate, validates_schema
from marshmallow import ValidationError as SchemaError

from ..constants import (
    DEFAULT_TRACKING_PARAMETERS,
    GDPR_API_MAX_BYTES,
    GDPR_API_TIMEOUT,
    RECOMMENDATIONS_FAILURES_BEFORE_PAUSE,
    RECOMMENDATIONS_PAUSE_SECONDS,
)
from ..errors import ConfigurationError
from ..export_kinds import EXPORT_KINDS
from ..model import (
    RECOMMENDATION_SOURCES,
    ActivationCredentials,
    RecommendationModule,
    ScheduledExport,
    TrackingMode,
    TrackWithoutConsent,
)
from ..secret import Secret
from .fields import (
    EnumValue,
    Flag,
    HttpURL,
    JSONEncoded,
    LimitsStorageURI,
    RedisURL,
    SecretString,
    SigningSecrets,
    Token,
    TrimmedString,
    group_identifier_rule,
    positive_int,
    seconds_between,
    setting,
    type_stream_ids,
    whole_match,
    whole_number_from,
)

_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,\-?LW#]+")
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Raptor account numbers are digits; Ibexa's own example is 123456 (ibexa_cdp.yaml).
_ACCOUNT_NUMBER = re.compile(r"[0-9]{1,12}")
_P_NUMBER = re.compile(r"p[1-9][0-9]?")
_HEADER_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")
_COOKIE_DOMAIN = re.compile(r"\.?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MODULE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9]{0,99}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,49}")
_QUERY_PARAMETER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

#: The CDP authenticates with the client secret alone: a short one could be guessed.
MIN_CLIENT_SECRET_LENGTH = 16


# -- the sections' values ----------------------------------------------------------------


@dataclass(frozen=True)
class SiteSettings:
    """What the whole site shares: Raptor's account, the shared Redis, the metrics page."""

    account_number: str | None
    cache_url: str | None = field(repr=False)
    rate_limit_storage_uri: str = field(repr=False)
    redis_pause_seconds: int
    metrics_token: Secret | None = field(repr=False)
    admin_site_url: str
    #: Days the back office dashboard's figures are kept.
    history_days: int


@dataclass(frozen=True)
class WebhookSettings:
    """``POST /cdp/webhook``: who may deliver, and how much."""

    activations: tuple[ActivationCredentials, ...]
    bulk_async_threshold: int
    max_bytes: int
    signing_secrets: tuple[Secret, ...] = field(repr=False)
    auth_failures_per_minute: int

    @property
    def protected_group_identifiers(self) -> frozenset[str]:
        """Groups named by a configured activation: only webhook deliveries change them."""
        return frozenset(a.segment_group_identifier for a in self.activations)


@dataclass(frozen=True)
class WorkerSettings:
    """The queue workers (``flask cdp worker``, or the inline worker)."""

    inline: bool | None
    lease_seconds: int


@dataclass(frozen=True)
class TrackingSettings:
    """What pages track, and how (SPEC sections 7, 10)."""

    mode: TrackingMode
    script_url: str
    parameters: Mapping[str, Mapping[str, str]]
    consent_cookie: str | None
    server_url: str
    concurrency: int
    buy_outbox: bool
    visitor_cookie_days: int
    address_limit_per_minute: int
    #: ``Domain=`` of every cookie cdp_bridge writes (``None``: host-only).
    cookie_domain: str | None


@dataclass(frozen=True)
class ReconcileSettings:
    """Reconciling the store with the CDP API (SPEC section 15)."""

    #: The largest answer read, each list of audiences or members.
    max_bytes: int
    #: A five-field cron expression: ``flask cdp worker`` runs the reconcile then; None: never.
    schedule: str | None


@dataclass(frozen=True)
class PrivacySettings:
    """Forgetting a person, and tracking before consent (SPEC section 14)."""

    #: Days a forgotten person cannot be added back by a delivery, nor named by an event.
    forget_hold_days: int
    #: Days Raptor's GDPR API is asked before the request is given up.
    forget_give_up_days: int
    #: ``none``: nothing before consent; ``cookieless``: events without any cookie or id.
    track_without_consent: TrackWithoutConsent

    @property
    def cookieless_before_consent(self) -> bool:
        return self.track_without_consent == TrackWithoutConsent.COOKIELESS


@dataclass(frozen=True)
class ExportSettings:
    """The Streaming API and each export kind's streams and schedule."""

    stream_api_url: str
    #: Each kind's single stream (``CDP_USER_STREAM_ID`` …), by kind.
    stream_ids: Mapping[str, Secret | None] = field(repr=False)
    #: Per product / content type, its own stream (Ibexa: each type has its own Stream ID).
    type_stream_ids: Mapping[str, Mapping[str, Secret]] = field(repr=False)
    schedule: Mapping[str, tuple[ScheduledExport, ...]]

    def stream_id(self, kind: str, type_name: str | None = None) -> Secret | None:
        """The stream of an export kind (``user``, ``product``, ``content``): the type's own
        (``CDP_PRODUCT_STREAM_IDS``, ``CDP_CONTENT_STREAM_IDS``), else the kind's single id."""
        own = self.type_stream_ids.get(kind, {}).get(type_name) if type_name is not None else None
        return own if own is not None else self.stream_ids.get(kind)


@dataclass(frozen=True)
class OutsideApi:
    """One of Raptor's APIs, as its section describes it: every such client, its cache
    and its circuit breaker are made from one of these."""

    #: The ``client`` label of its metrics (``cdp_breaker_open{client=…}``) and its logger's last name.
    name: str
    url: str
    key: Secret | None = field(repr=False)
    timeout: float
    cache_ttl: int
    failures_before_pause: int
    pause_seconds: int
    #: The largest answer read; a larger one is a failure.
    max_bytes: int


@dataclass(frozen=True)
class MembershipApi(OutsideApi):
    """The CDP API of visitor segments (SPEC section 9): on with its activation and key."""

    activation_id: str | None

    @property
    def enabled(self) -> bool:
        return self.activation_id is not None and self.key is not None


@dataclass(frozen=True)
class GdprApi(OutsideApi):
    """Raptor's GDPR API (SPEC section 14): ``DeleteUser`` for each forgotten identifier."""

    @property
    def enabled(self) -> bool:
        return self.key is not None


@dataclass(frozen=True)
class RecommendationsApi(OutsideApi):
    """The Recommendations API (SPEC section 11): on once modules are configured."""

    modules: Mapping[str, RecommendationModule]


# -- the sections' schemas ---------------------------------------------------------------


class Section(Schema):
    """A section's keys; ``make`` turns what loaded into its dataclass."""

    #: The heading of its part of the docs' table.
    title: ClassVar[str]

    class Meta:
        unknown = EXCLUDE
        ordered = True


class _ActivationSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    client_id = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255, error="expected 1-255 characters"),
        error_messages={"required": "required", "invalid": "expected a string"},
    )
    client_secret = SecretString(
        min_length=MIN_CLIENT_SECRET_LENGTH, required=True,
        error_messages={"required": "required", "invalid": "expected a string"}
    )
    segment_group_identifier = fields.String(
        required=True,
        validate=[validate.Length(max=255), group_identifier_rule()],
        error_messages={"required": "required", "invalid": "expected a string"},
    )


class _ModuleSchema(Schema):
    """One recommendation module: ``{"method", "kind", "count"?, "parameters"?}``."""

    class Meta:
        unknown = RAISE

    method = fields.String(required=True, validate=whole_match(_METHOD, "expected a Raptor method name such as"
                                                                        " GetUserRecommendations"))
    kind = fields.String(required=True, validate=whole_match(_KIND, "expected a kind of record such as product or"
                                                                    " content"))
    count = fields.Integer(strict=True, load_default=4, validate=validate.Range(
        min=1, max=100, error="expected a whole number from 1 to 100"))
    parameters = fields.Dict(
        keys=fields.String(validate=whole_match(_QUERY_PARAMETER, "expected a query parameter name")),
        values=fields.String(validate=validate.OneOf(RECOMMENDATION_SOURCES, error="expected one of "
                                                     + ", ".join(RECOMMENDATION_SOURCES))),
        load_default=lambda: {"UserIdentifier": "visitor"})


class _ScheduleEntrySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    interval = fields.String(required=True, error_messages={"required": "required"})
    options = fields.String(load_default="")

    @validates_schema
    def _cron(self, data: dict[str, Any], **kwargs: object) -> None:
        parts = data["interval"].split()
        if len(parts) != 5 or not all(_CRON_FIELD.fullmatch(p) for p in parts):
            raise SchemaError("expected a cron expression of five fields", "interval")


class SiteSection(Section):
    title = "The site"

    account_number = setting(TrimmedString(validate=whole_match(
        _ACCOUNT_NUMBER, "expected a Raptor account number of 1-12 digits, such as 123456")), "CDP_ACCOUNT_NUMBER",
        "Raptor account number: 1–12 digits, whitespace trimmed (Ibexa's own example is `123456`); also the tracking"
        " customer id", shown_default="required for tracking and export")
    admin_site_url = setting(HttpURL(site_path=True), "CDP_ADMIN_SITE_URL",
                             "where the back office's \"← Site\" link points (an http(s) URL or a path)", "/")
    history_days = setting(positive_int(1, "a whole number of days of at least 1"), "CDP_HISTORY_DAYS",
                           "days the back office dashboard's figures (member counts, deliveries, tracking, erasures,"
                           " reconciles per hour and per day) are kept; the worker deletes older ones", 90)
    cache_url = setting(RedisURL(), "CDP_CACHE_URL",
                        "a Redis URL (`redis://host:6379/0`) for the cache every process and host shares: visitor"
                        " segments (needs `pip install 'cdp_bridge[redis]'`); unset, each process keeps its own",
                        shown_default="— (each process's own)")
    rate_limit_storage_uri = setting(LimitsStorageURI(), "CDP_RATE_LIMIT_STORAGE_URI",
                                     "where Flask-Limiter keeps the counts of the rate limits: `memory://` (each process"
                                     " its own) or `redis://host:6379/0` (one count for a fleet; needs"
                                     " `pip install 'cdp_bridge[redis]'`). A host's own `Limiter` is used instead",
                                     "memory://")
    redis_pause_seconds = setting(positive_int(1, "a whole number of seconds of at least 1"), "CDP_REDIS_PAUSE_SECONDS",
                                  "after a call to the shared cache's or the limits' Redis fails (or times out), Redis"
                                  " is skipped for this many seconds (caches miss, limits are skipped), then one call"
                                  " tries again: a hung Redis costs one 0.25 s timeout per pause, not one per request",
                                  10)
    metrics_token = setting(Token(), "CDP_METRICS_TOKEN",
                            "bearer token for `GET /cdp/metrics` (Prometheus); at least 16 characters. Unset, only"
                            " whom the admin guard admits may read it; with neither, there is no such page")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> SiteSettings:
        return SiteSettings(**data)


class WebhookSection(Section):
    title = "The activation webhook"

    activation_client_id = setting(fields.String(validate=validate.Length(min=1, max=255)), "CDP_ACTIVATION_CLIENT_ID",
                                   "one activation (Ibexa's names): its client id; all three together")
    activation_client_secret = setting(SecretString(min_length=MIN_CLIENT_SECRET_LENGTH), "CDP_ACTIVATION_CLIENT_SECRET",
                                       "its client secret (at least 16 characters)")
    segment_group_identifier = setting(fields.String(validate=[validate.Length(max=255), group_identifier_rule()]),
                                       "CDP_SEGMENT_GROUP_IDENTIFIER", "its segment group")
    activations = setting(JSONEncoded(fields.List(fields.Nested(_ActivationSchema),
                                                  error_messages={"invalid": "expected a list of activations"})),
                          "CDP_ACTIVATIONS", "several activations: a list of `{client_id, client_secret,"
                          " segment_group_identifier}` (JSON in the environment); client ids must differ", default=[])
    bulk_async_threshold = setting(positive_int(1, "a whole number of at least 1"), "CDP_BULK_ASYNC_THRESHOLD",
                                   "webhook items at or above which a delivery is queued", 100)
    max_bytes = setting(positive_int(1, "a whole number of bytes of at least 1"), "CDP_WEBHOOK_MAX_BYTES",
                        "largest webhook body accepted", 32 * 1024 * 1024, "32 MiB")
    signing_secrets = setting(SigningSecrets(), "CDP_WEBHOOK_SIGNING_SECRETS",
                              "Standard Webhooks secrets (`whsec_…`; a list, JSON list, or space-separated)", default=())
    auth_failures_per_minute = setting(positive_int(1, "a whole number of at least 1"),
                                       "CDP_WEBHOOK_AUTH_FAILURES_PER_MINUTE",
                                       "failed authentications one client address may make at `POST /cdp/webhook`"
                                       " a minute before it is answered 429 (good credentials are never limited)", 10)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> WebhookSettings:
        data["activations"] = _activations(data.pop("activation_client_id"), data.pop("activation_client_secret"),
                                           data.pop("segment_group_identifier"), data["activations"])
        return WebhookSettings(**data)


class WorkerSection(Section):
    title = "The queue workers"

    inline = setting(Flag(error_messages={"invalid": "expected true or false"}), "CDP_INLINE_WORKER",
                     "apply queued deliveries in a thread of the web process", shown_default="on with SQLite, off otherwise")
    lease_seconds = setting(positive_int(1, "a whole number of seconds of at least 1"), "CDP_WORKER_LEASE_SECONDS",
                            "how long a worker's claim on a delivery lasts before another may take it over"
                            " (`flask cdp worker --lease-seconds` overrides it)", 120)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> WorkerSettings:
        return WorkerSettings(**data)


class TrackingSection(Section):
    title = "Tracking"

    script_url = setting(HttpURL(site_path=True), "CDP_TRACKING_SCRIPT_URL",
                         "Raptor main script (an http(s) URL, or a path on the site such as `/static/raptor.js`)",
                         "https://deliver.raptorstatic.com/script/raptor-3.0.min.js")
    parameters = setting(JSONEncoded(fields.Dict(
        keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.String()),
        error_messages={"invalid": 'expected a mapping such as {{"buy": {{"currency": "p9"}}}}'},  # marshmallow formats it
    )), "CDP_TRACKING_PARAMETERS", 'p-number overrides per event type, e.g. `{"buy": {"currency": "p9"}}`', {},
        "Raptor's defaults")
    consent_cookie = setting(fields.String(validate=whole_match(_COOKIE_NAME, "expected a cookie name")),
                             "CDP_CONSENT_COOKIE", "cookie whose value `1`/`true`/`yes` means tracking consent")
    mode = setting(EnumValue(TrackingMode), "CDP_TRACKING_MODE", "`client`, `server` or `hybrid` (see [Server-side and"
                   " hybrid tracking](tracking.md#server-side-and-hybrid-tracking))", TrackingMode.CLIENT)
    server_url = setting(HttpURL(base=True), "CDP_SERVER_TRACKING_URL", "Raptor's server-side tracking host",
                         "https://t.raptorsmartadvisor.com")
    concurrency = setting(whole_number_from(1, 64, "transfers"), "CDP_TRACKING_CONCURRENCY",
                          "server and hybrid modes: events each process sends at once (Raptor takes one event a request,"
                          " so this is what keeps a sender up with a slow host: 16 send about 700 events a second to a"
                          " host 20 ms away)", 16)
    buy_outbox = setting(Flag(error_messages={"invalid": "expected true or false"}), "CDP_TRACKING_BUY_OUTBOX",
                         "server and hybrid modes: write each server-sent buy to the database before the page"
                         " is answered, and send it from the queue workers (`flask cdp worker`, or the inline"
                         " worker), so a killed web process loses none", False, "off")
    visitor_cookie_days = setting(whole_number_from(1, 400, "days", " (browsers keep a cookie 400 days at most)"),
                                  "CDP_VISITOR_COOKIE_DAYS",
                                  "lifetime of the `rsa` cookie the server sets and renews (1–400; browsers keep none"
                                  " longer)", 365)
    address_limit_per_minute = setting(positive_int(1, "a whole number of at least 1"),
                                       "CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE",
                                       "events one client address may post to `POST /cdp/track` a minute, all its"
                                       " visitors together", 600)
    cookie_domain = setting(TrimmedString(validate=whole_match(
        _COOKIE_DOMAIN, "expected a domain such as example.com or .example.com")), "CDP_COOKIE_DOMAIN",
        "`Domain=` of every cookie cdp_bridge writes (`example.com`: `www.` and `shop.` share one visitor)",
        shown_default="host-only")

    @validates_schema
    def _parameters(self, data: dict[str, Any], **kwargs: object) -> None:
        for event_type, overrides in data.get("parameters", {}).items():
            for keyword, p_number in overrides.items():
                if keyword not in DEFAULT_TRACKING_PARAMETERS:
                    raise SchemaError(
                        f"{event_type}.{keyword}: unknown field; expected one of " + ", ".join(sorted(DEFAULT_TRACKING_PARAMETERS)),
                        "CDP_TRACKING_PARAMETERS",
                    )
                if not _P_NUMBER.fullmatch(p_number):
                    raise SchemaError(f"{event_type}.{keyword}: expected a parameter such as 'p9'", "CDP_TRACKING_PARAMETERS")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> TrackingSettings:
        return TrackingSettings(**data)


class ExportSection(Section):
    title = "The export"

    user_stream_id = setting(SecretString(), "CDP_USER_STREAM_ID", "Stream ID of the users from the Data Manager (a secret)")
    product_stream_id = setting(SecretString(), "CDP_PRODUCT_STREAM_ID", "Stream ID of the products (a secret)")
    content_stream_id = setting(SecretString(), "CDP_CONTENT_STREAM_ID", "Stream ID of the content (a secret)")
    product_stream_ids = setting(type_stream_ids("pet_food"), "CDP_PRODUCT_STREAM_IDS",
                                 "per product type its own Stream ID: a map type → id (JSON in the environment, e.g."
                                 ' `{"pet_food": "…"}`); a type not in the map uses the single id above', default={})
    content_stream_ids = setting(type_stream_ids("article"), "CDP_CONTENT_STREAM_IDS",
                                 "per content type its own Stream ID, likewise", default={})
    stream_api_url = setting(HttpURL(base=True), "CDP_STREAM_API_URL", "Raptor Streaming API base",
                             "https://in.raptorsmartadvisor.com/stream")
    schedule = setting(JSONEncoded(fields.Dict(
        keys=fields.String(validate=validate.OneOf(list(EXPORT_KINDS), error="expected one of " + ", ".join(EXPORT_KINDS))),
        values=fields.List(fields.Nested(_ScheduleEntrySchema)),
        error_messages={"invalid": 'expected a mapping such as {{"user": [{{"interval": "0 3 * * *"}}]}}'},
    )), "CDP_EXPORT_SCHEDULE", "per export kind (`user`, `product`, `content`), a list of `{interval: <cron>, options:"
        ' "<command options>"}`', {})

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> ExportSettings:
        return ExportSettings(
            stream_api_url=data["stream_api_url"],
            stream_ids={kind: data[f"{kind}_stream_id"] for kind in EXPORT_KINDS},
            type_stream_ids={kind: data[f"{kind}_stream_ids"] for kind, row in EXPORT_KINDS.items() if row.typed},
            schedule={kind: tuple(ScheduledExport(**entry) for entry in entries)
                      for kind, entries in data["schedule"].items()})


class MembershipApiSection(Section):
    title = "Visitor segments: Raptor's CDP API"

    url = setting(HttpURL(base=True), "CDP_MEMBERSHIP_API_URL", "Raptor's CDP API for visitor segments",
                  "https://cdp-api.raptorsmartadvisor.com")
    activation_id = setting(TrimmedString(validate=whole_match(
        _HEADER_TOKEN, "expected the CDP API activation's id (letters, digits, - and _)")), "CDP_MEMBERSHIP_ACTIVATION_ID",
        "the CDP API activation's id; with the key, turns visitor segments on")
    key = setting(SecretString(), "CDP_MEMBERSHIP_API_KEY", "the CDP API activation's key (a secret)")
    timeout = setting(seconds_between(0.05, 60), "CDP_MEMBERSHIP_TIMEOUT",
                      "seconds a call to the CDP API may take in all (0.05–60)", 5.0)
    max_bytes = setting(positive_int(1024, "a whole number of bytes of at least 1024"), "CDP_MEMBERSHIP_MAX_BYTES",
                        "the largest answer of the CDP API read; a larger one is a failure", 1024 * 1024, "1 MiB")
    failures_before_pause = setting(positive_int(1, "a whole number of at least 1"), "CDP_MEMBERSHIP_FAILURES_BEFORE_PAUSE",
                                    "failed calls in a row after which calls to the CDP API pause", 3)
    pause_seconds = setting(positive_int(1, "a whole number of seconds of at least 1"), "CDP_MEMBERSHIP_PAUSE_SECONDS",
                            "and for how many seconds", 30)
    cache_ttl = setting(positive_int(0, "a whole number of seconds (0 turns the cache off)"),
                        "CDP_VISITOR_SEGMENTS_CACHE_TTL",
                        "seconds a visitor's memberships are cached; `0` turns the cache off", 300)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> MembershipApi:
        if (data["activation_id"] is None) != (data["key"] is None):
            given, missing = (("CDP_MEMBERSHIP_ACTIVATION_ID", "CDP_MEMBERSHIP_API_KEY") if data["activation_id"]
                              else ("CDP_MEMBERSHIP_API_KEY", "CDP_MEMBERSHIP_ACTIVATION_ID"))
            raise ConfigurationError(f"{missing}: required together with {given} (the CDP API activation for visitor"
                                     " segments)")
        return MembershipApi(name="membership", **data)


class PrivacySection(Section):
    title = "Privacy"

    forget_hold_days = setting(positive_int(0, "a whole number of days"), "CDP_FORGET_HOLD_DAYS",
                               "days after `cdp.forget` during which no delivery adds the person back and no event"
                               " names them (Raptor takes up to 14 days to delete)", 14)
    forget_give_up_days = setting(positive_int(1, "a whole number of days of at least 1"), "CDP_FORGET_GIVE_UP_DAYS",
                                  "days Raptor's GDPR API is asked again (timeouts, 429, 5xx) before a `DeleteUser` is"
                                  " given up, with an ERROR", 7)
    track_without_consent = setting(EnumValue(TrackWithoutConsent), "CDP_TRACK_WITHOUT_CONSENT",
                                    "`none`: nothing is tracked before consent; `cookieless`: a visitor who has not"
                                    " consented is tracked without any cookie or id (`raptor.noCookies`; the legal basis"
                                    " is the shop's call, see [Privacy](privacy.md))", TrackWithoutConsent.NONE)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> PrivacySettings:
        return PrivacySettings(**data)


class CronExpression(TrimmedString):
    """Five cron fields, as cronsim (which runs the schedule) reads them."""

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            CronSim(text, datetime(2026, 1, 1))
        except CronSimError as exc:
            raise SchemaError(f"expected a cron expression of five fields, such as '30 3 * * *' ({exc})") from None
        return text


class ReconcileSection(Section):
    title = "Keeping the store true: reconcile"

    max_bytes = setting(positive_int(1024, "a whole number of bytes of at least 1024"), "CDP_RECONCILE_MAX_BYTES",
                        "the largest answer of the CDP API a reconcile reads (a list of audiences, or one audience's"
                        " members); a larger one fails that audience", 256 * 1024 * 1024, "256 MiB")
    schedule = setting(CronExpression(), "CDP_RECONCILE_SCHEDULE",
                       "a cron expression (`30 3 * * *`, UTC): `flask cdp worker` runs `flask cdp reconcile` then, one"
                       " worker of a fleet (see [Keeping the store true](keeping-the-store-true.md))",
                       shown_default="— (never)")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> ReconcileSettings:
        return ReconcileSettings(**data)


class GdprApiSection(Section):
    title = "Forgetting a person: Raptor's GDPR API"

    url = setting(HttpURL(base=True), "CDP_GDPR_API_URL", "Raptor's GDPR API (`DeleteUser`)",
                  "https://gdpr-api.raptorsmartadvisor.com")
    key = setting(SecretString(), "CDP_GDPR_API_KEY",
                  "its key (a secret, sent as `x-api-key`); unset, `forget` erases here only and says Raptor was"
                  " not asked")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> GdprApi:
        # Its calls are the workers', never a page's: no cache, no breaker (the queue's backoff).
        return GdprApi(name="gdpr", timeout=GDPR_API_TIMEOUT, cache_ttl=0, failures_before_pause=1,
                       pause_seconds=0, max_bytes=GDPR_API_MAX_BYTES, **data)


class RecommendationsApiSection(Section):
    title = "Recommendations: Raptor's Recommendations API"

    url = setting(HttpURL(base=True), "CDP_RECOMMENDATIONS_API_URL", "Raptor's Recommendations API",
                  "https://api.raptorsmartadvisor.com")
    key = setting(SecretString(), "CDP_RECOMMENDATIONS_API_KEY",
                  "the Recommendations API's key (a secret; it goes in the URL's path, never logged)")
    timeout = setting(seconds_between(0.05, 60), "CDP_RECOMMENDATIONS_TIMEOUT",
                      "seconds a call to the Recommendations API may take in all", 1.0)
    cache_ttl = setting(positive_int(0, "a whole number of seconds (0 turns the cache off)"),
                        "CDP_RECOMMENDATIONS_CACHE_TTL",
                        "seconds an answer is cached per module and parameters; `0` turns the cache off", 300)
    modules = setting(JSONEncoded(fields.Dict(
        keys=fields.String(validate=whole_match(_MODULE_NAME, "expected module names of 1-64 letters, digits, _ or -")),
        values=fields.Nested(_ModuleSchema),
        error_messages={"invalid": 'expected a mapping such as {{"personal": {{"method": "GetUserRecommendations",'
                                   ' "kind": "product"}}}}'},
    )), "CDP_RECOMMENDATION_MODULES", "per module name, `{method, kind, count, parameters}`: the Raptor web module's"
        " method, the kind of record, a default count (4) and its query parameters, each from `visitor`, `user`,"
        " `product_id`, `content_id` or `category` (see [Recommendations](recommendations.md))", {})

    @post_load
    def make(self, data: dict[str, Any], **kwargs: object) -> RecommendationsApi:
        modules = {name: RecommendationModule(name=name, **entry) for name, entry in data.pop("modules").items()}
        # Its breaker's numbers are fixed (constants.py); its answers are small.
        return RecommendationsApi(name="recommendations", failures_before_pause=RECOMMENDATIONS_FAILURES_BEFORE_PAUSE,
                                  pause_seconds=RECOMMENDATIONS_PAUSE_SECONDS, max_bytes=RECOMMENDATIONS_MAX_BYTES,
                                  modules=modules, **data)


#: The largest Recommendations API answer read (a list of ids).
RECOMMENDATIONS_MAX_BYTES = 1024 * 1024


def _activations(client_id: str | None, client_secret: Secret | None, group: str | None,
                 listed: list[dict[str, Any]]) -> tuple[ActivationCredentials, ...]:
    single_keys = {"CDP_ACTIVATION_CLIENT_ID": client_id, "CDP_ACTIVATION_CLIENT_SECRET": client_secret,
                   "CDP_SEGMENT_GROUP_IDENTIFIER": group}
    given = [key for key, value in single_keys.items() if value is not None]
    activations = [ActivationCredentials(**entry) for entry in listed]
    if given and len(given) < len(single_keys):
        missing = [key for key in single_keys if key not in given]
        raise ConfigurationError(f"{', '.join(missing)}: required together with {', '.join(given)}")
    if client_id is not None and client_secret is not None and group is not None:
        activations.insert(0, ActivationCredentials(client_id=client_id, client_secret=client_secret,
                                                    segment_group_identifier=group))
    seen: set[str] = set()
    for activation in activations:
        if activation.client_id in seen:
            raise ConfigurationError(f"CDP_ACTIVATIONS: client id {activation.client_id!r} is configured twice;"
                                     " expected each activation to have its own client id")
        seen.add(activation.client_id)
    return tuple(activations)
