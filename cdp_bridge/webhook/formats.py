"""Webhook body formats: from a decoded JSON document to an :class:`ActivationDocument`.

Raptor does not document the activation body, so cdp_bridge defines its own
(:class:`NativeFormat`, SPEC section 3) and keeps parsing behind the small
:class:`PayloadFormat` interface: to support a captured real request, write a class
with ``name``, ``accepts`` and ``parse`` and register it with
``cdp.register_payload_format(MyFormat())``; the domain code does not change.

Parsing is tolerant: a bad audience or a bad user id becomes a :class:`Rejection` and
the rest is kept; only a body that is not an object with an ``audiences`` list is
refused whole (:class:`PayloadError`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Protocol

from marshmallow import EXCLUDE, Schema, fields, validate
from marshmallow import ValidationError as SchemaError

from ..errors import PayloadError, ValidationError
from ..identifiers import (
    are_plain_user_ids,
    text_problem,
    validate_name,
    validate_segment_identifier,
    validate_user_id,
)
from ..model import ActivationDocument, AudienceChange, HeaderLookup, Rejection, Rejections, SegmentMetadata

#: Largest value a BIGINT column holds.
MAX_BIGINT = 2**63 - 1
MAX_DESCRIPTION_LENGTH = 10_000
MAX_TAGS = 100
MEMBER_LISTS = ("add", "remove", "members")


class PayloadFormat(Protocol):
    """One webhook body format."""

    name: str

    def accepts(self, document: object, headers: HeaderLookup) -> bool:
        """Whether this format reads ``document``."""

    def parse(self, document: object) -> ActivationDocument:
        """The document's audience changes; raises :class:`PayloadError` if unusable."""


class _StrictInteger(fields.Integer):
    """An integer that is not a bool and fits a BIGINT."""

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError("must be a whole number")
        if not 0 <= value <= MAX_BIGINT:
            raise SchemaError(f"must be between 0 and {MAX_BIGINT}")
        return value


class _StrictBoolean(fields.Boolean):
    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> bool:
        if not isinstance(value, bool):
            raise SchemaError("must be true or false")
        return value


class _OptionalText(fields.String):
    """A string that must not hold control characters (newlines and tabs allowed)."""

    def _deserialize(self, value: object, attr: object, data: object, **kwargs: object) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = text_problem(text, max_length=len(text), line_breaks=True)  # the length is the field's own check
        if problem is not None:
            raise SchemaError(problem)
        return text


class _AudienceSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    name = fields.Raw(allow_none=True)
    description = _OptionalText(allow_none=True, validate=validate.Length(max=MAX_DESCRIPTION_LENGTH))
    tags = fields.List(fields.Raw(), allow_none=True, validate=validate.Length(max=MAX_TAGS))
    profile_count = _StrictInteger(allow_none=True)
    updated_at = fields.AwareDateTime(allow_none=True, default_timezone=UTC)
    sequence = _StrictInteger(allow_none=True)
    deleted = _StrictBoolean(allow_none=True)


class _EnvelopeSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    segment_group_identifier = fields.String(allow_none=True)
    request_id = _OptionalText(allow_none=True, validate=validate.Length(min=1, max=255))
    # A null audience is one bad audience, rejected alone like any other.
    audiences = fields.List(fields.Raw(allow_none=True), required=True, error_messages={"required": "is required"})


#: Made once: a schema's load keeps no state between calls, and making one per body cost
#: more than loading the body.
_ENVELOPE = _EnvelopeSchema()
_AUDIENCE = _AudienceSchema()


class NativeFormat:
    """cdp_bridge's own body format (SPEC section 3); accepts any document as fallback."""

    name = "cdp_bridge.v1"

    def accepts(self, document: object, headers: HeaderLookup) -> bool:
        return True

    def parse(self, document: object) -> ActivationDocument:
        if not isinstance(document, dict):
            raise PayloadError("invalid_payload", "the body must be a JSON object")
        try:
            envelope = _ENVELOPE.load(document)
        except SchemaError as exc:
            raise PayloadError("invalid_payload", "the body does not have the expected form", exc.messages) from None
        changes: list[AudienceChange] = []
        rejected = Rejections()
        items = 0
        for index, raw in enumerate(envelope["audiences"]):
            items += _count_items(raw)
            change = _parse_audience(index, raw, rejected)
            if change is not None:
                changes.append(change)
        return ActivationDocument(
            changes=tuple(changes),
            rejected=rejected,
            items=items,
            segment_group_identifier=envelope.get("segment_group_identifier"),
            request_id=envelope.get("request_id"),
        )


def _count_items(raw: object) -> int:
    if not isinstance(raw, dict):
        return 0
    return sum(len(raw[key]) for key in MEMBER_LISTS if isinstance(raw.get(key), list))


def _audience_label(index: int, raw: object) -> str:
    value = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return _shown(value)
    return f"audiences[{index}]"


def _shown(value: object, limit: int = 300) -> str:
    """A refused value as it may be echoed back, stored and shown: valid Unicode text
    (a lone surrogate spelled ``\\ud800``), cut to a bounded length."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _parse_audience(index: int, raw: object, rejected: Rejections) -> AudienceChange | None:
    """The audience's change, or ``None`` when the audience itself is refused; refused
    parts go to ``rejected``."""
    label = _audience_label(index, raw)
    if not isinstance(raw, dict):
        rejected.add(Rejection(label, "an audience must be a JSON object"))
        return None
    try:
        audience_id = validate_segment_identifier(raw.get("id")) if raw.get("id") is not None else None
        if audience_id is None:
            raise ValidationError("audience id is required")
        # Member lists are checked id by id below, not by the schema (they can be huge).
        loaded = _AUDIENCE.load({k: v for k, v in raw.items() if k not in MEMBER_LISTS})
        loaded.update(_member_lists(raw))
        metadata = _metadata(loaded)
    except ValidationError as exc:
        rejected.add(Rejection(label, str(exc)))
        return None
    except SchemaError as exc:
        rejected.add(Rejection(label, _describe(exc.messages)))
        return None
    if loaded.get("deleted") and any(loaded.get(key) for key in MEMBER_LISTS):
        rejected.add(Rejection(label, "a deleted audience cannot also add, remove or list members"))
        return None
    return _members_change(audience_id, loaded, metadata, rejected)


def _member_lists(raw: dict[str, Any]) -> dict[str, list[Any] | None]:
    lists = {key: raw.get(key) for key in MEMBER_LISTS}
    for key, value in lists.items():
        if value is not None and not isinstance(value, list):
            raise ValidationError(f"{key} must be a list of user ids")
    return lists


def _metadata(loaded: dict[str, Any]) -> SegmentMetadata:
    name = loaded.get("name")
    tags = loaded.get("tags")
    updated_at: datetime | None = loaded.get("updated_at")
    return SegmentMetadata(
        name=validate_name(name, "audience name") if name is not None else None,
        description=loaded.get("description"),
        tags=tuple(validate_name(tag, "tag") for tag in tags) if tags is not None else None,
        profile_count=loaded.get("profile_count"),
        source_updated_at=updated_at.astimezone(UTC).replace(tzinfo=None) if updated_at else None,
    )


def _members_change(
    audience_id: str, loaded: dict[str, Any], metadata: SegmentMetadata, rejected: Rejections
) -> AudienceChange:
    lists: dict[str, list[str]] = {}
    for key in MEMBER_LISTS:
        lists[key] = _valid_user_ids(audience_id, loaded.get(key) or [], rejected)
    both = set(lists["add"]).intersection(lists["remove"]) if lists["remove"] else set()
    for user_id in sorted(both):
        rejected.add(Rejection(audience_id, "listed in both add and remove", user_id))
    change = AudienceChange(
        audience_id=audience_id,
        metadata=metadata,
        add=tuple(u for u in lists["add"] if u not in both) if both else tuple(lists["add"]),
        remove=tuple(u for u in lists["remove"] if u not in both) if both else tuple(lists["remove"]),
        members=tuple(lists["members"]) if loaded.get("members") is not None else None,
        deleted=bool(loaded.get("deleted")),
        sequence=loaded.get("sequence"),
    )
    return change


def _valid_user_ids(audience_id: str, values: list[Any], rejected: Rejections) -> list[str]:
    """The valid ids, each once, in their order; the others go to ``rejected``."""
    if values and are_plain_user_ids(values):  # the usual list: one pass, no per-id call
        return list(dict.fromkeys(values))
    valid: dict[str, None] = {}
    for value in values:
        try:
            valid[validate_user_id(value)] = None
        except ValidationError as exc:
            if rejected.sampling:
                rejected.add(Rejection(audience_id, str(exc), _shown(value)))
            else:  # a million bad ids cost a count each, not a formatted copy each
                rejected.count(str(exc))
    return list(valid)


def _describe(messages: object) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{key}: {_describe(value)}" for key, value in messages.items())
    if isinstance(messages, list):
        return " ".join(_describe(m) for m in messages)
    return str(messages)


def default_formats() -> list[PayloadFormat]:
    """The formats every CDP instance starts with."""
    return [NativeFormat()]


def choose_format(formats: list[PayloadFormat], document: object, headers: HeaderLookup) -> PayloadFormat:
    """The first registered format that accepts the document."""
    for payload_format in formats:
        if payload_format.accepts(document, headers):
            return payload_format
    raise PayloadError("invalid_payload", "no registered payload format accepts this body")
