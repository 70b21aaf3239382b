"""Reading and validating cdp_bridge's settings (SPEC section 2).

Each key is read from ``app.config`` first, then from the process environment (which a
``.env`` file may have filled). One marshmallow schema validates them all at start-up;
a wrong value raises :class:`ConfigurationError` naming the key and what it expects,
never the value itself, so a secret cannot leak through the message.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import enum
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values, find_dotenv
from marshmallow import EXCLUDE, RAISE, Schema, fields, post_load, validate, validates_schema
from marshmallow import ValidationError as SchemaError

from .constants import DEFAULT_TRACKING_PARAMETERS, RECOMMENDATIONS_FAILURES_BEFORE_PAUSE, RECOMMENDATIONS_PAUSE_SECONDS
from .errors import ConfigurationError
from .export_kinds import EXPORT_KINDS
from .identifiers import GROUP_IDENTIFIER_PATTERN
from .model import RECOMMENDATION_SOURCES, ActivationCredentials, RecommendationModule, ScheduledExport, TrackingMode
from .secret import Secret

_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,\-?LW#]+")
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Raptor account numbers are digits; Ibexa's own example is 123456 (ibexa_cdp.yaml).
_ACCOUNT_NUMBER = re.compile(r"[0-9]{1,12}")
_P_NUMBER = re.compile(r"p[1-9][0-9]?")
_HEADER_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")


@dataclass(frozen=True)
class OutsideApi:
    """One of Raptor's APIs a page waits for, as its settings describe it: every such
    client is made from one of these, its cache and its circuit breaker alike."""

    #: The ``client`` label of its metrics (``cdp_breaker_open{client=…}``).
    name: str
    url: str
    timeout: float
    cache_ttl: int
    failures_before_pause: int
    pause_seconds: int


@dataclass(frozen=True)
class CDPSettings:
    """The validated settings of one app, made by :func:`load_settings` only: each
    setting's key, default and documentation live in :class:`SettingsSchema`. Secrets
    are wrapped in :class:`Secret`."""

    account_number: str | None
    activations: tuple[ActivationCredentials, ...]
    user_stream_id: Secret | None = field(repr=False)
    product_stream_id: Secret | None = field(repr=False)
    content_stream_id: Secret | None = field(repr=False)
    #: Per product / content type, its own stream (Ibexa: each type has its own Stream ID).
    type_stream_ids: Mapping[str, Mapping[str, Secret]] = field(repr=False)
    stream_api_url: str
    bulk_async_threshold: int
    webhook_max_bytes: int
    webhook_signing_secrets: tuple[Secret, ...] = field(repr=False)
    tracking_script_url: str
    tracking_parameters: Mapping[str, Mapping[str, str]]
    consent_cookie: str | None
    inline_worker: bool | None
    export_schedule: Mapping[str, tuple[ScheduledExport, ...]]
    worker_lease_seconds: int
    admin_site_url: str
    membership_api_url: str
    membership_activation_id: str | None
    membership_api_key: Secret | None = field(repr=False)
    membership_timeout: float
    membership_max_bytes: int
    membership_failures_before_pause: int
    membership_pause_seconds: int
    visitor_segments_cache_ttl: int
    cache_url: str | None = field(repr=False)
    tracking_mode: TrackingMode
    server_tracking_url: str
    tracking_concurrency: int
    tracking_buy_outbox: bool
    visitor_cookie_days: int
    track_address_limit_per_minute: int
    webhook_auth_failures_per_minute: int
    rate_limit_storage_uri: str = field(repr=False)
    redis_pause_seconds: int
    metrics_token: Secret | None = field(repr=False)
    recommendations_api_url: str
    recommendations_api_key: Secret | None = field(repr=False)
    recommendations_timeout: float
    recommendations_cache_ttl: int
    recommendation_modules: Mapping[str, RecommendationModule]

    @property
    def membership_api(self) -> OutsideApi:
        """The CDP API's section: where it is, how long a call may take, how long its
        answers are kept, and when calls pause."""
        return OutsideApi("membership", self.membership_api_url, self.membership_timeout,
                          self.visitor_segments_cache_ttl, self.membership_failures_before_pause,
                          self.membership_pause_seconds)

    @property
    def recommendations_api(self) -> OutsideApi:
        """The Recommendations API's section (its breaker's numbers are fixed: constants.py)."""
        return OutsideApi("recommendations", self.recommendations_api_url, self.recommendations_timeout,
                          self.recommendations_cache_ttl, RECOMMENDATIONS_FAILURES_BEFORE_PAUSE,
                          RECOMMENDATIONS_PAUSE_SECONDS)

    @property
    def visitor_segments_enabled(self) -> bool:
        """Visitors are segmented through the CDP API once its activation is configured."""
        return self.membership_activation_id is not None and self.membership_api_key is not None

    @property
    def protected_group_identifiers(self) -> frozenset[str]:
        """Groups named by a configured activation: only webhook deliveries change them."""
        return frozenset(a.segment_group_identifier for a in self.activations)

    def stream_id(self, kind: str, type_name: str | None = None) -> Secret | None:
        """The stream of an export kind (``user``, ``product``, ``content``): the type's own
        (``CDP_PRODUCT_STREAM_IDS``, ``CDP_CONTENT_STREAM_IDS``), else the kind's single id."""
        own = self.type_stream_ids.get(kind, {}).get(type_name) if type_name is not None else None
        if own is not None:
            return own
        single: Secret | None = getattr(self, f"{kind}_stream_id")
        return single


class _JSONEncoded(fields.Field[Any]):
    """Accepts the inner field's value, or a JSON string of it (as the environment gives)."""

    def __init__(self, inner: fields.Field[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inner = inner

    def _bind_to_schema(self, field_name: str, parent: Any) -> None:
        super()._bind_to_schema(field_name, parent)
        self.inner._bind_to_schema(field_name, self)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, (str, bytes)):
            value = _setting_json(value)
        return self.inner.deserialize(value)


class _TrimmedString(fields.String):
    """A string without the whitespace around it (an environment value often has some)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class _EnumValue(fields.String):
    """One of a StrEnum's values, whitespace trimmed."""

    def __init__(self, enum_type: type[enum.StrEnum], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enum_type = enum_type

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> enum.StrEnum:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        try:
            return self.enum_type(text)
        except ValueError:
            raise SchemaError("expected one of " + ", ".join(self.enum_type)) from None


class _SecretString(fields.String):
    """A non-empty string that is no placeholder, returned wrapped in :class:`Secret`;
    with ``min_length``, at least that long (a short secret is a guessable one)."""

    def __init__(self, *, min_length: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_length = min_length

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Secret:  # type: ignore[override]
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if not text:
            raise SchemaError("expected a non-empty secret string")
        problem = secret_problem(text, self.min_length)
        if problem:
            raise SchemaError(problem)
        return Secret(text)


#: Values an operator leaves in a pasted example (``...``, ``<your secret>``, ``changeme``).
PLACEHOLDER = re.compile(r"\.{2,}|…|<[^>]*>|x{3,}|change[-_ ]?me|your[-_ ].*|todo|placeholder|secret|password",
                         re.IGNORECASE)


def secret_problem(text: str, min_length: int = 1) -> str | None:
    """Why ``text`` cannot be a secret (a placeholder, or shorter than ``min_length``), in
    words that never repeat it; ``None`` when it can. Also for the demo site's own
    SECRET_KEY and SHOP_ADMIN_PASSWORD."""
    if PLACEHOLDER.fullmatch(text) or "..." in text or "…" in text:
        return "expected a real secret, not a placeholder such as '...': make one with python3 -c" \
               " 'import secrets; print(secrets.token_urlsafe(32))'"
    if len(text) < min_length:
        return f"expected a secret of at least {min_length} characters (this one has {len(text)})"
    return None


class _Flag(fields.Boolean):
    """A boolean that also accepts the usual environment spellings."""

    truthy = {"1", "true", "yes", "on", 1}
    falsy = {"0", "false", "no", "off", 0}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, str):
            value = value.strip().lower()
        return super()._deserialize(value, attr, data, **kwargs)


class _SigningSecrets(fields.Field[tuple[Secret, ...]]):
    """A list of ``whsec_<base64>`` secrets: a list, a JSON list, or a space/comma list."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> tuple[Secret, ...]:
        if isinstance(value, str):
            text = value.strip()
            value = _setting_json(text) if text.startswith("[") else re.split(r"[\s,]+", text)
        if not isinstance(value, (list, tuple)):
            raise SchemaError("expected a list of whsec_… secrets")
        secrets = tuple(_signing_secret(item, index) for index, item in enumerate(value) if item)
        if not secrets:
            raise SchemaError("expected at least one whsec_… secret")
        return secrets


def _signing_secret(item: Any, index: int) -> Secret:
    if not isinstance(item, str) or not item.startswith("whsec_"):
        raise SchemaError(f"entry {index}: expected a string starting with 'whsec_'")
    try:
        key = base64.b64decode(item[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError(f"entry {index}: expected base64 after 'whsec_'") from None
    if not MIN_SIGNING_KEY_BYTES <= len(key) <= MAX_SIGNING_KEY_BYTES:
        # an empty or short key signs nothing worth checking (Standard Webhooks: 24-64 bytes)
        raise SchemaError(f"entry {index}: expected a key of {MIN_SIGNING_KEY_BYTES}-{MAX_SIGNING_KEY_BYTES} bytes"
                          f" after 'whsec_' (base64), not {len(key)}; make one with {MAKE_SIGNING_SECRET}")
    return Secret(item)


#: Standard Webhooks' bounds for a signing key, in bytes.
MIN_SIGNING_KEY_BYTES, MAX_SIGNING_KEY_BYTES = 24, 64
MAKE_SIGNING_SECRET = ("python3 -c \"import base64, secrets;"
                       " print('whsec_' + base64.b64encode(secrets.token_bytes(32)).decode())\"")


def _setting_json(text: str | bytes) -> Any:
    """``json.loads``, its error a :class:`SchemaError` naming where (never the text, which
    may hold a secret)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SchemaError(f"expected valid JSON ({exc.msg} at position {exc.pos})") from None  # type: ignore[attr-defined]


def _whole_match(pattern: re.Pattern[str], error: str) -> validate.Validator:
    """Like ``validate.Regexp`` but the whole value must match, not just its start."""
    return validate.Regexp(re.compile(pattern.pattern + r"\Z"), error=error)


def _group_identifier_rule() -> validate.Validator:
    return _whole_match(
        GROUP_IDENTIFIER_PATTERN,
        "expected a segment group identifier of lower-case letters, digits and _",
    )


#: The CDP authenticates with the client secret alone: a short one could be guessed.
MIN_CLIENT_SECRET_LENGTH = 16


class _ActivationSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    client_id = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255, error="expected 1-255 characters"),
        error_messages={"required": "required", "invalid": "expected a string"},
    )
    client_secret = _SecretString(
        min_length=MIN_CLIENT_SECRET_LENGTH, required=True,
        error_messages={"required": "required", "invalid": "expected a string"}
    )
    segment_group_identifier = fields.String(
        required=True,
        validate=[validate.Length(max=255), _group_identifier_rule()],
        error_messages={"required": "required", "invalid": "expected a string"},
    )


_MODULE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_METHOD = re.compile(r"[A-Za-z][A-Za-z0-9]{0,99}")
_KIND = re.compile(r"[a-z][a-z0-9_]{0,49}")
_QUERY_PARAMETER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


class _ModuleSchema(Schema):
    """One recommendation module: ``{"method", "kind", "count"?, "parameters"?}``."""

    class Meta:
        unknown = RAISE

    method = fields.String(required=True, validate=_whole_match(_METHOD, "expected a Raptor method name such as"
                                                                          " GetUserRecommendations"))
    kind = fields.String(required=True, validate=_whole_match(_KIND, "expected a kind of record such as product or"
                                                                      " content"))
    count = fields.Integer(strict=True, load_default=4, validate=validate.Range(
        min=1, max=100, error="expected a whole number from 1 to 100"))
    parameters = fields.Dict(
        keys=fields.String(validate=_whole_match(_QUERY_PARAMETER, "expected a query parameter name")),
        values=fields.String(validate=validate.OneOf(RECOMMENDATION_SOURCES, error="expected one of "
                                                     + ", ".join(RECOMMENDATION_SOURCES))),
        load_default=lambda: {"UserIdentifier": "visitor"})


class _ScheduleEntrySchema(Schema):
    class Meta:
        unknown = EXCLUDE

    interval = fields.String(required=True, error_messages={"required": "required"})
    options = fields.String(load_default="")

    @validates_schema
    def _cron(self, data: dict[str, Any], **kwargs: Any) -> None:
        parts = data["interval"].split()
        if len(parts) != 5 or not all(_CRON_FIELD.fullmatch(p) for p in parts):
            raise SchemaError("expected a cron expression of five fields", "interval")


def _type_stream_ids(example_type: str) -> fields.Field[Any]:
    """A map type -> stream id (secret), given as a mapping or as JSON text."""
    return _JSONEncoded(
        fields.Dict(
            keys=fields.String(validate=validate.Length(min=1, max=255)),
            values=_SecretString(),
            # No braces: marshmallow formats these messages.
            error_messages={"invalid": f"expected a JSON object of type to stream id, such as {example_type}: the type's id"},
        ),
    )


def _positive_int(minimum: int, what: str) -> fields.Integer:
    return fields.Integer(
        strict=False,
        validate=validate.Range(min=minimum, error=f"expected {what}"),
        error_messages={"invalid": f"expected {what}"},
    )


class _HttpURL(fields.String):
    """An http(s) URL with a host; with ``site_path`` also a path on the site
    (``/static/raptor.js``); with ``base``, without its trailing slash (paths are appended).

    Checked with ``urllib.parse``: marshmallow's URL regex takes ~50 ms to compile, at
    every start of every worker and command.
    """

    def __init__(self, *, site_path: bool = False, base: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site_path = site_path
        self.base = base

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if self.site_path and text.startswith("/") and not text.startswith("//"):
            return text
        if not _is_http_url(text):
            raise SchemaError("expected an http(s) URL" + (" or a path starting with /" if self.site_path else ""))
        return text.rstrip("/") if self.base else text


class _RedisURL(fields.String):
    """A Redis URL: ``redis://``, ``rediss://`` (TLS) or ``unix://``, as redis-py reads them."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
        except ValueError:
            raise SchemaError("expected a Redis URL such as redis://localhost:6379/0") from None
        if (parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path)
                or not text.isprintable() or any(character.isspace() for character in text)):
            raise SchemaError("expected a Redis URL such as redis://localhost:6379/0")
        return text


class _LimitsStorageURI(fields.String):
    """A storage URI of the ``limits`` library, as Flask-Limiter takes it: ``memory://``,
    ``redis://host:6379/0``, ``rediss://…``, ``redis+sentinel://…``, ``memcached://…``."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        from limits.storage import SCHEMES  # type: ignore[attr-defined]  # the registry of storage_from_string

        text = super()._deserialize(value, attr, data, **kwargs).strip()
        scheme = text.partition("://")[0] if "://" in text else ""
        if (scheme not in SCHEMES or scheme.startswith("async+") or not text.isprintable()
                or any(character.isspace() for character in text)):
            raise SchemaError("expected a rate-limit storage URI such as memory:// or redis://localhost:6379/0")
        return text


class _Token(_SecretString):
    """A bearer token: printable, no spaces, at least 16 characters (a guessable token guards nothing)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Secret:  # type: ignore[override]
        token = super()._deserialize(value, attr, data, **kwargs)
        text = token.reveal()
        if len(text) < 16 or not text.isprintable() or any(character.isspace() for character in text):
            raise SchemaError("expected a token of at least 16 printable characters without spaces")
        return token


def _is_http_url(text: str) -> bool:
    if not text.isprintable() or any(character.isspace() for character in text):
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _setting(field_: fields.Field[Any], key: str, doc: str, default: Any = None, shown_default: str | None = None
             ) -> fields.Field[Any]:
    """A schema field for the setting ``key``: its one default and its line in the docs."""
    field_.data_key = key
    field_.load_default = default
    field_.metadata = {"doc": doc, "default": shown_default}
    return field_


class SettingsSchema(Schema):
    """Every ``CDP_*`` setting: its key, how it is validated, its one default and its
    documentation (docs/settings.md's table is :func:`settings_table`). Loads into a
    :class:`CDPSettings`; field names are the settings' attribute names."""

    class Meta:
        unknown = EXCLUDE
        ordered = True

    account_number = _setting(_TrimmedString(validate=_whole_match(
        _ACCOUNT_NUMBER, "expected a Raptor account number of 1-12 digits, such as 123456")), "CDP_ACCOUNT_NUMBER",
        "Raptor account number: 1–12 digits, whitespace trimmed (Ibexa's own example is `123456`); also the tracking"
        " customer id", shown_default="required for tracking and export")
    activation_client_id = _setting(fields.String(validate=validate.Length(min=1, max=255)), "CDP_ACTIVATION_CLIENT_ID",
                                    "one activation (Ibexa's names): its client id; all three together")
    activation_client_secret = _setting(_SecretString(min_length=MIN_CLIENT_SECRET_LENGTH), "CDP_ACTIVATION_CLIENT_SECRET",
                                        "its client secret (at least 16 characters)")
    segment_group_identifier = _setting(fields.String(validate=[validate.Length(max=255), _group_identifier_rule()]),
                                        "CDP_SEGMENT_GROUP_IDENTIFIER", "its segment group")
    activations = _setting(_JSONEncoded(fields.List(fields.Nested(_ActivationSchema),
                                                    error_messages={"invalid": "expected a list of activations"})),
                           "CDP_ACTIVATIONS", "several activations: a list of `{client_id, client_secret,"
                           " segment_group_identifier}` (JSON in the environment); client ids must differ", default=[])
    user_stream_id = _setting(_SecretString(), "CDP_USER_STREAM_ID", "Stream ID of the users from the Data Manager (a secret)")
    product_stream_id = _setting(_SecretString(), "CDP_PRODUCT_STREAM_ID", "Stream ID of the products (a secret)")
    content_stream_id = _setting(_SecretString(), "CDP_CONTENT_STREAM_ID", "Stream ID of the content (a secret)")
    product_stream_ids = _setting(_type_stream_ids("pet_food"), "CDP_PRODUCT_STREAM_IDS",
                                  "per product type its own Stream ID: a map type → id (JSON in the environment, e.g."
                                  ' `{"pet_food": "…"}`); a type not in the map uses the single id above', default={})
    content_stream_ids = _setting(_type_stream_ids("article"), "CDP_CONTENT_STREAM_IDS",
                                  "per content type its own Stream ID, likewise", default={})
    stream_api_url = _setting(_HttpURL(base=True), "CDP_STREAM_API_URL", "Raptor Streaming API base",
                              "https://in.raptorsmartadvisor.com/stream")
    bulk_async_threshold = _setting(_positive_int(1, "a whole number of at least 1"), "CDP_BULK_ASYNC_THRESHOLD",
                                    "webhook items at or above which a delivery is queued", 100)
    webhook_max_bytes = _setting(_positive_int(1, "a whole number of bytes of at least 1"), "CDP_WEBHOOK_MAX_BYTES",
                                 "largest webhook body accepted", 32 * 1024 * 1024, "32 MiB")
    webhook_signing_secrets = _setting(_SigningSecrets(), "CDP_WEBHOOK_SIGNING_SECRETS",
                                       "Standard Webhooks secrets (`whsec_…`; a list, JSON list, or space-separated)",
                                       default=())
    tracking_script_url = _setting(_HttpURL(site_path=True), "CDP_TRACKING_SCRIPT_URL",
                                   "Raptor main script (an http(s) URL, or a path on the site such as `/static/raptor.js`)",
                                   "https://deliver.raptorstatic.com/script/raptor-3.0.min.js")
    tracking_parameters = _setting(_JSONEncoded(fields.Dict(
        keys=fields.String(), values=fields.Dict(keys=fields.String(), values=fields.String()),
        error_messages={"invalid": 'expected a mapping such as {{"buy": {{"currency": "p9"}}}}'},  # marshmallow formats it
    )), "CDP_TRACKING_PARAMETERS", 'p-number overrides per event type, e.g. `{"buy": {"currency": "p9"}}`', {},
        "Raptor's defaults")
    consent_cookie = _setting(fields.String(validate=_whole_match(_COOKIE_NAME, "expected a cookie name")),
                              "CDP_CONSENT_COOKIE", "cookie whose value `1`/`true`/`yes` means tracking consent")
    inline_worker = _setting(_Flag(error_messages={"invalid": "expected true or false"}), "CDP_INLINE_WORKER",
                             "apply queued deliveries in a thread of the web process", shown_default="on with SQLite, off otherwise")
    export_schedule = _setting(_JSONEncoded(fields.Dict(
        keys=fields.String(validate=validate.OneOf(list(EXPORT_KINDS), error="expected one of user, product, content")),
        values=fields.List(fields.Nested(_ScheduleEntrySchema)),
        error_messages={"invalid": 'expected a mapping such as {{"user": [{{"interval": "0 3 * * *"}}]}}'},
    )), "CDP_EXPORT_SCHEDULE", "per export kind (`user`, `product`, `content`), a list of `{interval: <cron>, options:"
        ' "<command options>"}`', {})
    worker_lease_seconds = _setting(_positive_int(1, "a whole number of seconds of at least 1"), "CDP_WORKER_LEASE_SECONDS",
                                    "how long a worker's claim on a delivery lasts before another may take it over"
                                    " (`flask cdp worker --lease-seconds` overrides it)", 120)
    admin_site_url = _setting(_HttpURL(site_path=True), "CDP_ADMIN_SITE_URL",
                              "where the back office's \"← Site\" link points (an http(s) URL or a path)", "/")
    membership_api_url = _setting(_HttpURL(base=True), "CDP_MEMBERSHIP_API_URL", "Raptor's CDP API for visitor segments",
                                  "https://cdp-api.raptorsmartadvisor.com")
    membership_activation_id = _setting(_TrimmedString(validate=_whole_match(
        _HEADER_TOKEN, "expected the CDP API activation's id (letters, digits, - and _)")), "CDP_MEMBERSHIP_ACTIVATION_ID",
        "the CDP API activation's id; with the key, turns visitor segments on")
    membership_api_key = _setting(_SecretString(), "CDP_MEMBERSHIP_API_KEY", "the CDP API activation's key (a secret)")
    membership_timeout = _setting(fields.Float(
        validate=validate.Range(min=0.05, max=60, error="expected seconds between 0.05 and 60"),
        error_messages={"invalid": "expected seconds between 0.05 and 60", "special": "expected seconds between 0.05 and 60"},
        allow_nan=False), "CDP_MEMBERSHIP_TIMEOUT", "seconds a call to the CDP API may take in all (0.05–60)", 5.0)
    membership_max_bytes = _setting(_positive_int(1024, "a whole number of bytes of at least 1024"), "CDP_MEMBERSHIP_MAX_BYTES",
                                    "the largest answer of the CDP API read; a larger one is a failure", 1024 * 1024, "1 MiB")
    membership_failures_before_pause = _setting(_positive_int(1, "a whole number of at least 1"),
                                                "CDP_MEMBERSHIP_FAILURES_BEFORE_PAUSE",
                                                "failed calls in a row after which calls to the CDP API pause", 3)
    membership_pause_seconds = _setting(_positive_int(1, "a whole number of seconds of at least 1"),
                                        "CDP_MEMBERSHIP_PAUSE_SECONDS", "and for how many seconds", 30)
    visitor_segments_cache_ttl = _setting(_positive_int(0, "a whole number of seconds (0 turns the cache off)"),
                                          "CDP_VISITOR_SEGMENTS_CACHE_TTL",
                                          "seconds a visitor's memberships are cached; `0` turns the cache off", 300)
    cache_url = _setting(_RedisURL(), "CDP_CACHE_URL",
                         "a Redis URL (`redis://host:6379/0`) for the cache every process and host shares: visitor"
                         " segments (needs `pip install 'cdp_bridge[redis]'`); unset, each process keeps its own",
                         shown_default="— (each process's own)")
    tracking_mode = _setting(_EnumValue(TrackingMode),
                             "CDP_TRACKING_MODE", "`client`, `server` or `hybrid` (see [Server-side and hybrid tracking]"
                             "(tracking.md#server-side-and-hybrid-tracking))", TrackingMode.CLIENT)
    server_tracking_url = _setting(_HttpURL(base=True), "CDP_SERVER_TRACKING_URL", "Raptor's server-side tracking host",
                                   "https://t.raptorsmartadvisor.com")
    tracking_concurrency = _setting(fields.Integer(
        strict=False, validate=validate.Range(min=1, max=64, error="expected a whole number of transfers from 1 to 64"),
        error_messages={"invalid": "expected a whole number of transfers from 1 to 64"}), "CDP_TRACKING_CONCURRENCY",
        "server and hybrid modes: events each process sends at once (Raptor takes one event a request, so this is what"
        " keeps a sender up with a slow host: 16 send about 700 events a second to a host 20 ms away)", 16)
    tracking_buy_outbox = _setting(_Flag(error_messages={"invalid": "expected true or false"}), "CDP_TRACKING_BUY_OUTBOX",
                                   "server and hybrid modes: write each server-sent buy to the database before the page"
                                   " is answered, and send it from the queue workers (`flask cdp worker`, or the inline"
                                   " worker), so a killed web process loses none", False, "off")
    visitor_cookie_days = _setting(fields.Integer(
        strict=False, validate=validate.Range(
            min=1, max=400, error="expected a whole number of days from 1 to 400 (browsers keep a cookie 400 days at most)"),
        error_messages={"invalid": "expected a whole number of days from 1 to 400"}), "CDP_VISITOR_COOKIE_DAYS",
        "lifetime of the `rsa` cookie the server sets and renews (1–400; browsers keep none longer)", 365)
    track_address_limit_per_minute = _setting(_positive_int(1, "a whole number of at least 1"),
                                              "CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE",
                                              "events one client address may post to `POST /cdp/track` a minute, all its"
                                              " visitors together", 600)
    webhook_auth_failures_per_minute = _setting(_positive_int(1, "a whole number of at least 1"),
                                                "CDP_WEBHOOK_AUTH_FAILURES_PER_MINUTE",
                                                "failed authentications one client address may make at `POST /cdp/webhook`"
                                                " a minute before it is answered 429 (good credentials are never limited)", 10)
    rate_limit_storage_uri = _setting(_LimitsStorageURI(), "CDP_RATE_LIMIT_STORAGE_URI",
                                      "where Flask-Limiter keeps the counts of those limits: `memory://` (each process"
                                      " its own) or `redis://host:6379/0` (one count for a fleet; needs"
                                      " `pip install 'cdp_bridge[redis]'`). A host's own `Limiter` is used instead",
                                      "memory://")
    redis_pause_seconds = _setting(_positive_int(1, "a whole number of seconds of at least 1"), "CDP_REDIS_PAUSE_SECONDS",
                                   "after a call to the shared cache's or the limits' Redis fails (or times out), Redis"
                                   " is skipped for this many seconds (caches miss, limits are skipped), then one call"
                                   " tries again: a hung Redis costs one 0.25 s timeout per pause, not one per request",
                                   10)
    metrics_token = _setting(_Token(), "CDP_METRICS_TOKEN",
                             "bearer token for `GET /cdp/metrics` (Prometheus); at least 16 characters. Unset, only"
                             " whom the admin guard admits may read it; with neither, there is no such page")
    recommendations_api_url = _setting(_HttpURL(base=True), "CDP_RECOMMENDATIONS_API_URL", "Raptor's Recommendations API",
                                       "https://api.raptorsmartadvisor.com")
    recommendations_api_key = _setting(_SecretString(), "CDP_RECOMMENDATIONS_API_KEY",
                                       "the Recommendations API's key (a secret; it goes in the URL's path, never logged)")
    recommendations_timeout = _setting(fields.Float(
        validate=validate.Range(min=0.05, max=60, error="expected seconds between 0.05 and 60"),
        error_messages={"invalid": "expected seconds between 0.05 and 60", "special": "expected seconds between 0.05 and 60"},
        allow_nan=False), "CDP_RECOMMENDATIONS_TIMEOUT", "seconds a call to the Recommendations API may take in all", 1.0)
    recommendations_cache_ttl = _setting(_positive_int(0, "a whole number of seconds (0 turns the cache off)"),
                                         "CDP_RECOMMENDATIONS_CACHE_TTL",
                                         "seconds an answer is cached per module and parameters; `0` turns the cache off", 300)
    recommendation_modules = _setting(_JSONEncoded(fields.Dict(
        keys=fields.String(validate=_whole_match(_MODULE_NAME, "expected module names of 1-64 letters, digits, _ or -")),
        values=fields.Nested(_ModuleSchema),
        error_messages={"invalid": 'expected a mapping such as {{"personal": {{"method": "GetUserRecommendations",'
                                   ' "kind": "product"}}}}'},
    )), "CDP_RECOMMENDATION_MODULES", "per module name, `{method, kind, count, parameters}`: the Raptor web module's"
        " method, the kind of record, a default count (4) and its query parameters, each from `visitor`, `user`,"
        " `product_id`, `content_id` or `category` (see [Recommendations](recommendations.md))", {})

    @validates_schema
    def _tracking_parameters(self, data: dict[str, Any], **kwargs: Any) -> None:
        for event_type, overrides in data.get("tracking_parameters", {}).items():
            for keyword, p_number in overrides.items():
                if keyword not in DEFAULT_TRACKING_PARAMETERS:
                    raise SchemaError(
                        f"{event_type}.{keyword}: unknown field; expected one of " + ", ".join(sorted(DEFAULT_TRACKING_PARAMETERS)),
                        "CDP_TRACKING_PARAMETERS",
                    )
                if not _P_NUMBER.fullmatch(p_number):
                    raise SchemaError(f"{event_type}.{keyword}: expected a parameter such as 'p9'", "CDP_TRACKING_PARAMETERS")

    @post_load
    def _settings(self, data: dict[str, Any], **kwargs: Any) -> CDPSettings:
        if (data["membership_activation_id"] is None) != (data["membership_api_key"] is None):
            given, missing = (("CDP_MEMBERSHIP_ACTIVATION_ID", "CDP_MEMBERSHIP_API_KEY") if data["membership_activation_id"]
                              else ("CDP_MEMBERSHIP_API_KEY", "CDP_MEMBERSHIP_ACTIVATION_ID"))
            raise ConfigurationError(f"{missing}: required together with {given} (the CDP API activation for visitor segments)")
        data["recommendation_modules"] = _recommendation_modules(data)
        data["activations"] = _activations(data.pop("activation_client_id"), data.pop("activation_client_secret"),
                                           data.pop("segment_group_identifier"), data["activations"])
        data["type_stream_ids"] = {"product": data.pop("product_stream_ids"), "content": data.pop("content_stream_ids")}
        data["export_schedule"] = {kind: tuple(ScheduledExport(**entry) for entry in entries)
                                   for kind, entries in data["export_schedule"].items()}
        return CDPSettings(**data)


#: Every key, in the order the README documents them.
ALL_KEYS: tuple[str, ...] = tuple(str(f.data_key) for f in SettingsSchema().fields.values())


def settings_table() -> str:
    """The settings table of docs/settings.md, from the schema."""
    rows = ["| key | meaning | default |", "|---|---|---|"]
    for schema_field in SettingsSchema().fields.values():
        shown = schema_field.metadata["default"]
        if shown is None:
            default = schema_field.load_default
            shown = "—" if default is None or default in ({}, [], ()) else f"`{default}`"
        rows.append(f"| `{schema_field.data_key}` | {schema_field.metadata['doc']} | {shown} |")
    return "\n".join(rows)


def read_raw_settings(config: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The value of each key from ``config``, else the environment; absent keys are left out.

    A key set to ``None`` in ``config`` counts as absent, so an app can blank an
    environment value explicitly only by giving another value.
    """
    raw: dict[str, Any] = {}
    for key in ALL_KEYS:
        if config.get(key) is not None:
            value = config[key]
            # An account number written as a Python int is the same number.
            raw[key] = str(value) if key == "CDP_ACCOUNT_NUMBER" and type(value) is int else value
        elif environ.get(key, "").strip():
            raw[key] = environ[key]
    return raw


#: Names a ``.env`` file to read instead of the working directory's. gunicorn.conf.py
#: points its workers at the last ``.env`` that passed the check, so a reload with a
#: mistyped one keeps serving on the last good settings.
ENV_FILE_KEY = "CDP_ENV_FILE"
#: Keys of the environment that start with ``CDP_`` and are no setting, yet are cdp_bridge's.
OTHER_CDP_KEYS = frozenset({ENV_FILE_KEY})


def env_file_values(path: str) -> dict[str, str]:
    """The keys a ``.env`` file sets (python-dotenv; a key with no ``=`` is left out)."""
    return {key: value for key, value in dotenv_values(path).items() if value is not None}


def process_environment() -> dict[str, str]:
    """The environment settings are read from: ``os.environ``, and for keys it does not set
    the ``.env`` file (``CDP_ENV_FILE``'s, else the working directory's, as python-dotenv
    finds it; also under gunicorn, which loads none). The file is read, never written into
    ``os.environ``, and read afresh each time an app registers cdp_bridge, so a reload's
    new workers see its changes."""
    path = os.environ.get(ENV_FILE_KEY) or find_dotenv(usecwd=True)
    return {**(env_file_values(path) if path else {}), **os.environ}


def unknown_keys(*sources: Mapping[str, Any]) -> list[str]:
    """One line per ``CDP_*`` key of ``sources`` (the environment, a ``.env`` file,
    ``app.config``) that is no setting, naming the closest known key: a misspelt setting
    is otherwise silently ignored."""
    known = set(ALL_KEYS) | OTHER_CDP_KEYS
    found = sorted({key for source in sources for key in source if key.startswith("CDP_") and key not in known})
    lines = []
    for key in found:
        close = difflib.get_close_matches(key, ALL_KEYS, n=1, cutoff=0.75)
        lines.append(f"unknown setting {key}" + (f" (did you mean {close[0]}?)" if close else "") + "; it is ignored")
    return lines


def check_env_file(path: str, environ: Mapping[str, str] | None = None) -> tuple[str | None, list[str]]:
    """What is wrong with the settings an app would read with ``path`` as its ``.env``:
    the one error that stops it (``None`` if none), and the unknown keys (see
    :func:`unknown_keys`). ``environ`` defaults to ``os.environ``, which wins over the file."""
    if not os.path.isfile(path):
        return f"{path}: no such file", []
    from_file = env_file_values(path)
    environ = os.environ if environ is None else environ
    try:
        load_settings({}, {**from_file, **environ})
    except ConfigurationError as exc:
        return str(exc), unknown_keys(from_file, environ)
    return None, unknown_keys(from_file, environ)


def load_settings(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> CDPSettings:
    """Validate the settings of one app, or raise :class:`ConfigurationError`; ``environ``
    defaults to :func:`process_environment`."""
    raw = read_raw_settings(config, process_environment() if environ is None else environ)
    try:
        settings: CDPSettings = SettingsSchema().load(raw)
    except SchemaError as exc:
        raise ConfigurationError("invalid cdp_bridge setting: " + _describe(exc.messages)) from None
    return settings


def _recommendation_modules(data: dict[str, Any]) -> dict[str, RecommendationModule]:
    modules = {name: RecommendationModule(name=name, **entry) for name, entry in data["recommendation_modules"].items()}
    if modules:
        for key, needed in (("CDP_RECOMMENDATIONS_API_KEY", data["recommendations_api_key"]),
                            ("CDP_ACCOUNT_NUMBER", data["account_number"])):
            if needed is None:
                raise ConfigurationError(f"{key}: required with CDP_RECOMMENDATION_MODULES (the Recommendations API's"
                                         " URL holds it)")
    return modules


def _activations(client_id: str | None, client_secret: Secret | None, group: str | None,
                 listed: list[dict[str, Any]]) -> tuple[ActivationCredentials, ...]:
    single_keys = {"CDP_ACTIVATION_CLIENT_ID": client_id, "CDP_ACTIVATION_CLIENT_SECRET": client_secret,
                   "CDP_SEGMENT_GROUP_IDENTIFIER": group}
    given = [key for key, value in single_keys.items() if value is not None]
    activations = [ActivationCredentials(**entry) for entry in listed]
    if given and len(given) < len(single_keys):
        missing = ", ".join(key for key in single_keys if key not in given)
        raise ConfigurationError(f"{missing}: required together with {', '.join(given)}")
    if client_id is not None and client_secret is not None and group is not None:
        activations.insert(0, ActivationCredentials(client_id=client_id, client_secret=client_secret,
                                                    segment_group_identifier=group))
    seen: set[str] = set()
    for activation in activations:
        if activation.client_id in seen:
            raise ConfigurationError(
                f"CDP_ACTIVATIONS: client id {activation.client_id!r} is configured twice;"
                " expected each activation to have its own client id"
            )
        seen.add(activation.client_id)
    return tuple(activations)


def _describe(messages: Any, prefix: str = "") -> str:
    """Flatten marshmallow's nested messages into 'KEY[0].field: message; …'."""
    if isinstance(messages, dict):
        parts = []
        for key, value in messages.items():
            if key in ("_schema", "value"):
                name = prefix
            elif isinstance(key, int):
                name = f"{prefix}[{key}]"
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
            parts.append(_describe(value, name))
        return "; ".join(parts)
    if isinstance(messages, list):
        texts = [m if isinstance(m, str) else _describe(m, prefix) for m in messages]
        return f"{prefix}: {' '.join(texts)}" if prefix else " ".join(texts)
    return f"{prefix}: {messages}"

