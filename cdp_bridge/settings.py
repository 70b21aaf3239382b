"""Reading and validating cdp_bridge's settings (SPEC section 2).

Each key is read from ``app.config`` first, then from the process environment (which a
``.env`` file may have filled). One marshmallow schema validates them all at start-up;
a wrong value raises :class:`ConfigurationError` naming the key and what it expects,
never the value itself, so a secret cannot leak through the message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from marshmallow import EXCLUDE, Schema, fields, validate, validates_schema
from marshmallow import ValidationError as SchemaError

from . import constants as c
from .errors import ConfigurationError
from .identifiers import GROUP_IDENTIFIER_PATTERN
from .model import ActivationCredentials, ScheduledExport
from .secret import Secret

_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,\-?LW#]+")
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Raptor account numbers are digits; Ibexa's own example is 123456 (ibexa_cdp.yaml).
_ACCOUNT_NUMBER = re.compile(r"[0-9]{1,12}")
_P_NUMBER = re.compile(r"p[1-9][0-9]?")
_HEADER_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,255}")


@dataclass(frozen=True)
class CDPSettings:
    """The validated settings of one app. Secrets are wrapped in :class:`Secret`."""

    account_number: str | None = None
    activations: tuple[ActivationCredentials, ...] = ()
    user_stream_id: Secret | None = field(default=None, repr=False)
    product_stream_id: Secret | None = field(default=None, repr=False)
    content_stream_id: Secret | None = field(default=None, repr=False)
    #: Per product / content type, its own stream (Ibexa: each type has its own Stream ID).
    type_stream_ids: Mapping[str, Mapping[str, Secret]] = field(default_factory=dict, repr=False)
    stream_api_url: str = c.DEFAULT_STREAM_API_URL
    bulk_async_threshold: int = c.DEFAULT_BULK_ASYNC_THRESHOLD
    webhook_max_bytes: int = c.DEFAULT_WEBHOOK_MAX_BYTES
    webhook_signing_secrets: tuple[Secret, ...] = field(default=(), repr=False)
    tracking_script_url: str = c.DEFAULT_TRACKING_SCRIPT_URL
    tracking_parameters: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    consent_cookie: str | None = None
    inline_worker: bool | None = None
    export_schedule: Mapping[str, tuple[ScheduledExport, ...]] = field(default_factory=dict)
    worker_lease_seconds: int = c.DEFAULT_WORKER_LEASE_SECONDS
    admin_site_url: str = c.DEFAULT_ADMIN_SITE_URL
    membership_api_url: str = c.DEFAULT_MEMBERSHIP_API_URL
    membership_activation_id: str | None = None
    membership_api_key: Secret | None = field(default=None, repr=False)
    membership_timeout: float = c.DEFAULT_MEMBERSHIP_TIMEOUT
    membership_max_bytes: int = c.DEFAULT_MEMBERSHIP_MAX_BYTES
    membership_failures_before_pause: int = c.DEFAULT_MEMBERSHIP_FAILURES_BEFORE_PAUSE
    membership_pause_seconds: int = c.DEFAULT_MEMBERSHIP_PAUSE_SECONDS
    visitor_segments_cache_ttl: int = c.DEFAULT_VISITOR_SEGMENTS_CACHE_TTL
    tracking_mode: str = c.DEFAULT_TRACKING_MODE
    server_tracking_url: str = c.DEFAULT_SERVER_TRACKING_URL
    visitor_cookie_days: int = c.DEFAULT_VISITOR_COOKIE_DAYS
    track_address_limit_per_minute: int = c.DEFAULT_TRACK_ADDRESS_LIMIT_PER_MINUTE

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
        return {
            "user": self.user_stream_id,
            "product": self.product_stream_id,
            "content": self.content_stream_id,
        }[kind]


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
            try:
                value = json.loads(value)
            except ValueError as exc:
                # exc.msg and position only: never the text, which may hold a secret.
                raise SchemaError(
                    f"expected valid JSON ({exc.msg} at position {exc.pos})"  # type: ignore[attr-defined]
                ) from None
        return self.inner.deserialize(value)


class _TrimmedString(fields.String):
    """A string without the whitespace around it (an environment value often has some)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class _SecretString(fields.String):
    """A non-empty string, returned wrapped in :class:`Secret`."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Secret:  # type: ignore[override]
        text = super()._deserialize(value, attr, data, **kwargs)
        if not text.strip():
            raise SchemaError("expected a non-empty secret string")
        return Secret(text.strip())


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
            value = json.loads(text) if text.startswith("[") else re.split(r"[\s,]+", text)
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
        base64.b64decode(item[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise SchemaError(f"entry {index}: expected base64 after 'whsec_'") from None
    return Secret(item)


def _whole_match(pattern: re.Pattern[str], error: str) -> validate.Validator:
    """Like ``validate.Regexp`` but the whole value must match, not just its start."""
    return validate.Regexp(re.compile(pattern.pattern + r"\Z"), error=error)


def _group_identifier_rule() -> validate.Validator:
    return _whole_match(
        GROUP_IDENTIFIER_PATTERN,
        "expected a segment group identifier of lower-case letters, digits and _",
    )


class _ActivationSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    client_id = fields.String(
        required=True,
        validate=validate.Length(min=1, max=255, error="expected 1-255 characters"),
        error_messages={"required": "required", "invalid": "expected a string"},
    )
    client_secret = _SecretString(
        required=True, error_messages={"required": "required", "invalid": "expected a string"}
    )
    segment_group_identifier = fields.String(
        required=True,
        validate=[validate.Length(max=255), _group_identifier_rule()],
        error_messages={"required": "required", "invalid": "expected a string"},
    )


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


def _type_stream_ids(key: str, example_type: str) -> fields.Field[Any]:
    """A map type -> stream id (secret), given as a mapping or as JSON text."""
    return _JSONEncoded(
        fields.Dict(
            keys=fields.String(validate=validate.Length(min=1, max=255)),
            values=_SecretString(),
            # No braces: marshmallow formats these messages.
            error_messages={"invalid": f"expected a JSON object of type to stream id, such as {example_type}: the type's id"},
        ),
        data_key=key,
    )


def _positive_int(key: str, minimum: int, what: str) -> fields.Integer:
    return fields.Integer(
        data_key=key,
        strict=False,
        validate=validate.Range(min=minimum, error=f"expected {what}"),
        error_messages={"invalid": f"expected {what}"},
    )


def _url(key: str, default: str, *, site_path: bool = False) -> fields.Field[Any]:
    return _HttpURL(site_path=site_path, data_key=key, load_default=default)


class _HttpURL(fields.String):
    """An http(s) URL with a host, or with ``site_path`` also a path on the site (``/static/raptor.js``).

    Checked with ``urllib.parse``: marshmallow's URL regex takes ~50 ms to compile, at
    every start of every worker and command.
    """

    def __init__(self, *, site_path: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site_path = site_path

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if self.site_path and text.startswith("/") and not text.startswith("//"):
            return text
        if not _is_http_url(text):
            raise SchemaError("expected an http(s) URL" + (" or a path starting with /" if self.site_path else ""))
        return text


def _is_http_url(text: str) -> bool:
    if not text.isprintable() or any(character.isspace() for character in text):
        return False
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


class SettingsSchema(Schema):
    """Validates the raw ``CDP_*`` values of one app; data keys are the config keys."""

    class Meta:
        unknown = EXCLUDE

    account_number = _TrimmedString(
        data_key=c.ACCOUNT_NUMBER,
        validate=_whole_match(_ACCOUNT_NUMBER, "expected a Raptor account number of 1-12 digits, such as 123456"),
    )
    activation_client_id = fields.String(data_key=c.ACTIVATION_CLIENT_ID, validate=validate.Length(min=1, max=255))
    activation_client_secret = _SecretString(data_key=c.ACTIVATION_CLIENT_SECRET)
    segment_group_identifier = fields.String(
        data_key=c.SEGMENT_GROUP_IDENTIFIER,
        validate=[validate.Length(max=255), _group_identifier_rule()],
    )
    activations = _JSONEncoded(
        fields.List(fields.Nested(_ActivationSchema), error_messages={"invalid": "expected a list of activations"}),
        data_key=c.ACTIVATIONS,
    )
    user_stream_id = _SecretString(data_key=c.USER_STREAM_ID)
    product_stream_id = _SecretString(data_key=c.PRODUCT_STREAM_ID)
    content_stream_id = _SecretString(data_key=c.CONTENT_STREAM_ID)
    product_stream_ids = _type_stream_ids(c.PRODUCT_STREAM_IDS, "pet_food")
    content_stream_ids = _type_stream_ids(c.CONTENT_STREAM_IDS, "article")
    stream_api_url = _url(c.STREAM_API_URL, c.DEFAULT_STREAM_API_URL)
    bulk_async_threshold = _positive_int(c.BULK_ASYNC_THRESHOLD, 1, "a whole number of at least 1")
    webhook_max_bytes = _positive_int(c.WEBHOOK_MAX_BYTES, 1, "a whole number of bytes of at least 1")
    webhook_signing_secrets = _SigningSecrets(data_key=c.WEBHOOK_SIGNING_SECRETS)
    tracking_script_url = _url(c.TRACKING_SCRIPT_URL, c.DEFAULT_TRACKING_SCRIPT_URL, site_path=True)
    tracking_parameters = _JSONEncoded(
        fields.Dict(
            keys=fields.String(),
            values=fields.Dict(keys=fields.String(), values=fields.String()),
            error_messages={"invalid": 'expected a mapping such as {{"buy": {{"currency": "p9"}}}}'},  # marshmallow formats it
        ),
        data_key=c.TRACKING_PARAMETERS,
    )
    consent_cookie = fields.String(
        data_key=c.CONSENT_COOKIE,
        validate=_whole_match(_COOKIE_NAME, "expected a cookie name"),
    )
    inline_worker = _Flag(data_key=c.INLINE_WORKER, error_messages={"invalid": "expected true or false"})
    export_schedule = _JSONEncoded(
        fields.Dict(
            keys=fields.String(validate=validate.OneOf(c.EXPORT_KINDS, error="expected one of user, product, content")),
            values=fields.List(fields.Nested(_ScheduleEntrySchema)),
            error_messages={"invalid": 'expected a mapping such as {{"user": [{{"interval": "0 3 * * *"}}]}}'},
        ),
        data_key=c.EXPORT_SCHEDULE,
    )
    worker_lease_seconds = _positive_int(c.WORKER_LEASE_SECONDS, 1, "a whole number of seconds of at least 1")
    admin_site_url = _url(c.ADMIN_SITE_URL, c.DEFAULT_ADMIN_SITE_URL, site_path=True)
    membership_api_url = _url(c.MEMBERSHIP_API_URL, c.DEFAULT_MEMBERSHIP_API_URL)
    membership_activation_id = _TrimmedString(
        data_key=c.MEMBERSHIP_ACTIVATION_ID,
        validate=_whole_match(_HEADER_TOKEN, "expected the CDP API activation's id (letters, digits, - and _)"),
    )
    membership_api_key = _SecretString(data_key=c.MEMBERSHIP_API_KEY)
    membership_timeout = fields.Float(
        data_key=c.MEMBERSHIP_TIMEOUT,
        validate=validate.Range(min=0.05, max=60, error="expected seconds between 0.05 and 60"),
        error_messages={"invalid": "expected seconds between 0.05 and 60", "special": "expected seconds between 0.05 and 60"},
        allow_nan=False,
    )
    membership_max_bytes = _positive_int(c.MEMBERSHIP_MAX_BYTES, 1024, "a whole number of bytes of at least 1024")
    membership_failures_before_pause = _positive_int(c.MEMBERSHIP_FAILURES_BEFORE_PAUSE, 1, "a whole number of at least 1")
    membership_pause_seconds = _positive_int(c.MEMBERSHIP_PAUSE_SECONDS, 1, "a whole number of seconds of at least 1")
    tracking_mode = _TrimmedString(
        data_key=c.TRACKING_MODE,
        validate=validate.OneOf(c.TRACKING_MODES, error="expected one of client, server, hybrid"),
    )
    server_tracking_url = _url(c.SERVER_TRACKING_URL, c.DEFAULT_SERVER_TRACKING_URL)
    visitor_cookie_days = fields.Integer(
        data_key=c.VISITOR_COOKIE_DAYS, strict=False,
        validate=validate.Range(min=1, max=400,
                                error="expected a whole number of days from 1 to 400 (browsers keep a cookie 400 days at most)"),
        error_messages={"invalid": "expected a whole number of days from 1 to 400"},
    )
    track_address_limit_per_minute = _positive_int(c.TRACK_ADDRESS_LIMIT_PER_MINUTE, 1, "a whole number of at least 1")
    visitor_segments_cache_ttl = _positive_int(c.VISITOR_SEGMENTS_CACHE_TTL, 0, "a whole number of seconds (0 turns the cache off)")

    @validates_schema
    def _tracking_parameters(self, data: dict[str, Any], **kwargs: Any) -> None:
        for event_type, overrides in data.get("tracking_parameters", {}).items():
            for keyword, p_number in overrides.items():
                if keyword not in c.DEFAULT_TRACKING_PARAMETERS:
                    raise SchemaError(
                        f"{event_type}.{keyword}: unknown field; expected one of "
                        + ", ".join(sorted(c.DEFAULT_TRACKING_PARAMETERS)),
                        c.TRACKING_PARAMETERS,
                    )
                if not _P_NUMBER.fullmatch(p_number):
                    raise SchemaError(
                        f"{event_type}.{keyword}: expected a parameter such as 'p9'",
                        c.TRACKING_PARAMETERS,
                    )


def read_raw_settings(config: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The value of each key from ``config``, else the environment; absent keys are left out.

    A key set to ``None`` in ``config`` counts as absent, so an app can blank an
    environment value explicitly only by giving another value.
    """
    raw: dict[str, Any] = {}
    for key in c.ALL_KEYS:
        if config.get(key) is not None:
            value = config[key]
            # An account number written as a Python int is the same number.
            raw[key] = str(value) if key == c.ACCOUNT_NUMBER and type(value) is int else value
        elif environ.get(key, "").strip():
            raw[key] = environ[key]
    return raw


def load_settings(config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> CDPSettings:
    """Validate the settings of one app, or raise :class:`ConfigurationError`."""
    raw = read_raw_settings(config, os.environ if environ is None else environ)
    try:
        loaded = SettingsSchema().load(raw)
    except SchemaError as exc:
        raise ConfigurationError("invalid cdp_bridge setting: " + _describe(exc.messages)) from None
    if ("membership_activation_id" in loaded) != ("membership_api_key" in loaded):
        given, missing = ((c.MEMBERSHIP_ACTIVATION_ID, c.MEMBERSHIP_API_KEY) if "membership_activation_id" in loaded
                          else (c.MEMBERSHIP_API_KEY, c.MEMBERSHIP_ACTIVATION_ID))
        raise ConfigurationError(f"{missing}: required together with {given} (the CDP API activation for visitor segments)")
    return CDPSettings(
        account_number=loaded.get("account_number"),
        activations=_activations(loaded),
        user_stream_id=loaded.get("user_stream_id"),
        product_stream_id=loaded.get("product_stream_id"),
        content_stream_id=loaded.get("content_stream_id"),
        type_stream_ids={
            "product": loaded.get("product_stream_ids", {}),
            "content": loaded.get("content_stream_ids", {}),
        },
        stream_api_url=loaded["stream_api_url"].rstrip("/"),
        bulk_async_threshold=loaded.get("bulk_async_threshold", c.DEFAULT_BULK_ASYNC_THRESHOLD),
        webhook_max_bytes=loaded.get("webhook_max_bytes", c.DEFAULT_WEBHOOK_MAX_BYTES),
        webhook_signing_secrets=loaded.get("webhook_signing_secrets", ()),
        tracking_script_url=loaded["tracking_script_url"],
        tracking_parameters=loaded.get("tracking_parameters", {}),
        consent_cookie=loaded.get("consent_cookie"),
        inline_worker=loaded.get("inline_worker"),
        export_schedule={
            kind: tuple(ScheduledExport(**entry) for entry in entries)
            for kind, entries in loaded.get("export_schedule", {}).items()
        },
        worker_lease_seconds=loaded.get("worker_lease_seconds", c.DEFAULT_WORKER_LEASE_SECONDS),
        admin_site_url=loaded["admin_site_url"],
        membership_api_url=loaded["membership_api_url"].rstrip("/"),
        membership_activation_id=loaded.get("membership_activation_id"),
        membership_api_key=loaded.get("membership_api_key"),
        membership_timeout=loaded.get("membership_timeout", c.DEFAULT_MEMBERSHIP_TIMEOUT),
        membership_max_bytes=loaded.get("membership_max_bytes", c.DEFAULT_MEMBERSHIP_MAX_BYTES),
        membership_failures_before_pause=loaded.get("membership_failures_before_pause",
                                                    c.DEFAULT_MEMBERSHIP_FAILURES_BEFORE_PAUSE),
        membership_pause_seconds=loaded.get("membership_pause_seconds", c.DEFAULT_MEMBERSHIP_PAUSE_SECONDS),
        visitor_segments_cache_ttl=loaded.get("visitor_segments_cache_ttl", c.DEFAULT_VISITOR_SEGMENTS_CACHE_TTL),
        tracking_mode=loaded.get("tracking_mode", c.DEFAULT_TRACKING_MODE),
        server_tracking_url=loaded["server_tracking_url"].rstrip("/"),
        visitor_cookie_days=loaded.get("visitor_cookie_days", c.DEFAULT_VISITOR_COOKIE_DAYS),
        track_address_limit_per_minute=loaded.get("track_address_limit_per_minute", c.DEFAULT_TRACK_ADDRESS_LIMIT_PER_MINUTE),
    )


def _activations(loaded: dict[str, Any]) -> tuple[ActivationCredentials, ...]:
    single_keys = {
        c.ACTIVATION_CLIENT_ID: loaded.get("activation_client_id"),
        c.ACTIVATION_CLIENT_SECRET: loaded.get("activation_client_secret"),
        c.SEGMENT_GROUP_IDENTIFIER: loaded.get("segment_group_identifier"),
    }
    given = [key for key, value in single_keys.items() if value is not None]
    activations = [ActivationCredentials(**entry) for entry in loaded.get("activations", [])]
    if given and len(given) < len(single_keys):
        missing = ", ".join(key for key in single_keys if key not in given)
        raise ConfigurationError(f"{missing}: required together with {', '.join(given)}")
    if given:
        activations.insert(0, ActivationCredentials(
            client_id=loaded["activation_client_id"],
            client_secret=loaded["activation_client_secret"],
            segment_group_identifier=loaded["segment_group_identifier"],
        ))
    seen: set[str] = set()
    for activation in activations:
        if activation.client_id in seen:
            raise ConfigurationError(
                f"{c.ACTIVATIONS}: client id {activation.client_id!r} is configured twice;"
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

