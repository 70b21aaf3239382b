"""The kinds of value cdp_bridge's settings hold, as marshmallow fields: each checks what
an operator wrote (in ``app.config``, the environment or a ``.env`` file) and says what
it expected, never repeating the value (it may be a secret)."""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from typing import Any
from urllib.parse import urlsplit

from marshmallow import ValidationError as SchemaError
from marshmallow import fields, validate

from ..identifiers import GROUP_IDENTIFIER_PATTERN
from ..secret import Secret


class JSONEncoded(fields.Field[Any]):
    """Accepts the inner field's value, or a JSON string of it (as the environment gives)."""

    def __init__(self, inner: fields.Field[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inner = inner

    def _bind_to_schema(self, field_name: str, parent: Any) -> None:
        super()._bind_to_schema(field_name, parent)
        self.inner._bind_to_schema(field_name, self)

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> Any:
        if isinstance(value, (str, bytes)):
            value = setting_json(value)
        return self.inner.deserialize(value)


class TrimmedString(fields.String):
    """A string without the whitespace around it (an environment value often has some)."""

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class EnumValue(fields.String):
    """One of a StrEnum's values, whitespace trimmed."""

    def __init__(self, enum_type: type[enum.StrEnum], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enum_type = enum_type

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> enum.StrEnum:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        try:
            return self.enum_type(text)
        except ValueError:
            raise SchemaError("expected one of " + ", ".join(self.enum_type)) from None


class SecretString(fields.String):
    """A non-empty string that is no placeholder, returned wrapped in :class:`Secret`;
    with ``min_length``, at least that long (a short secret is a guessable one)."""

    def __init__(self, *, min_length: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_length = min_length

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> Secret:  # type: ignore[override]
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


class Flag(fields.Boolean):
    """A boolean that also accepts the usual environment spellings."""

    truthy = {"1", "true", "yes", "on", 1}
    falsy = {"0", "false", "no", "off", 0}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, str):
            value = value.strip().lower()
        return super()._deserialize(value, attr, data, **kwargs)


class SigningSecrets(fields.Field[tuple[Secret, ...]]):
    """A list of ``whsec_<base64>`` secrets: a list, a JSON list, or a space/comma list."""

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> tuple[Secret, ...]:
        if isinstance(value, str):
            text = value.strip()
            value = setting_json(text) if text.startswith("[") else re.split(r"[\s,]+", text)
        if not isinstance(value, (list, tuple)):
            raise SchemaError("expected a list of whsec_… secrets")
        secrets = tuple(_signing_secret(item, index) for index, item in enumerate(value) if item)
        if not secrets:
            raise SchemaError("expected at least one whsec_… secret")
        return secrets


def _signing_secret(item: object, index: int) -> Secret:
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


def setting_json(text: str | bytes) -> Any:
    """``json.loads``, its error a :class:`SchemaError` naming where (never the text, which
    may hold a secret)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SchemaError(f"expected valid JSON ({exc.msg} at position {exc.pos})") from None  # type: ignore[attr-defined]


def whole_match(pattern: re.Pattern[str], error: str) -> validate.Validator:
    """Like ``validate.Regexp`` but the whole value must match, not just its start."""
    return validate.Regexp(re.compile(pattern.pattern + r"\Z"), error=error)


def group_identifier_rule() -> validate.Validator:
    return whole_match(
        GROUP_IDENTIFIER_PATTERN,
        "expected a segment group identifier of lower-case letters, digits and _",
    )


def type_stream_ids(example_type: str) -> fields.Field[Any]:
    """A map type -> stream id (secret), given as a mapping or as JSON text."""
    return JSONEncoded(
        fields.Dict(
            keys=fields.String(validate=validate.Length(min=1, max=255)),
            values=SecretString(),
            # No braces: marshmallow formats these messages.
            error_messages={"invalid": f"expected a JSON object of type to stream id, such as {example_type}: the type's id"},
        ),
    )


def positive_int(minimum: int, what: str) -> fields.Integer:
    return fields.Integer(
        strict=False,
        validate=validate.Range(min=minimum, error=f"expected {what}"),
        error_messages={"invalid": f"expected {what}"},
    )


class HttpURL(fields.String):
    """An http(s) URL with a host; with ``site_path`` also a path on the site
    (``/static/raptor.js``); with ``base``, without its trailing slash (paths are appended).

    Checked with ``urllib.parse``: marshmallow's URL regex takes ~50 ms to compile, at
    every start of every worker and command.
    """

    def __init__(self, *, site_path: bool = False, base: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.site_path = site_path
        self.base = base

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> str:
        text = super()._deserialize(value, attr, data, **kwargs).strip()
        if self.site_path and text.startswith("/") and not text.startswith("//"):
            return text
        if not _is_http_url(text):
            raise SchemaError("expected an http(s) URL" + (" or a path starting with /" if self.site_path else ""))
        return text.rstrip("/") if self.base else text


class RedisURL(fields.String):
    """A Redis URL: ``redis://``, ``rediss://`` (TLS) or ``unix://``, as redis-py reads them."""

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> str:
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


class LimitsStorageURI(fields.String):
    """A storage URI of the ``limits`` library, as Flask-Limiter takes it: ``memory://``,
    ``redis://host:6379/0``, ``rediss://…``, ``redis+sentinel://…``, ``memcached://…``."""

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> str:
        from limits.storage import SCHEMES  # type: ignore[attr-defined]  # the registry of storage_from_string

        text = super()._deserialize(value, attr, data, **kwargs).strip()
        scheme = text.partition("://")[0] if "://" in text else ""
        if (scheme not in SCHEMES or scheme.startswith("async+") or not text.isprintable()
                or any(character.isspace() for character in text)):
            raise SchemaError("expected a rate-limit storage URI such as memory:// or redis://localhost:6379/0")
        return text


class Token(SecretString):
    """A bearer token: printable, no spaces, at least 16 characters (a guessable token guards nothing)."""

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> Secret:  # type: ignore[override]
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


def setting(field_: fields.Field[Any], key: str, doc: str, default: object = None, shown_default: str | None = None
             ) -> fields.Field[Any]:
    """A schema field for the setting ``key``: its one default and its line in the docs."""
    field_.data_key = key
    field_.load_default = default
    field_.metadata = {"doc": doc, "default": shown_default}
    return field_




def seconds_between(low: float, high: float) -> fields.Float:
    """A number of seconds from ``low`` to ``high`` (a timeout)."""
    expected = f"expected seconds between {low:g} and {high:g}"
    return fields.Float(validate=validate.Range(min=low, max=high, error=expected),
                        error_messages={"invalid": expected, "special": expected}, allow_nan=False)


def whole_number_from(low: int, high: int, what: str, extra: str = "") -> fields.Integer:
    """A whole number from ``low`` to ``high`` of ``what`` (days, transfers…)."""
    expected = f"expected a whole number of {what} from {low} to {high}"
    return fields.Integer(strict=False, validate=validate.Range(min=low, max=high, error=expected + extra),
                          error_messages={"invalid": expected})
