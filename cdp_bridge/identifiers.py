"""Validation of the names that cross cdp_bridge's boundaries: identifiers and user ids.

Shared by the settings, the store, the webhook payload and the CLI so that every entry
point accepts and refuses exactly the same values.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from .constants import MAX_IDENTIFIER_LENGTH
from .errors import ValidationError

GROUP_IDENTIFIER_PATTERN = re.compile(r"[a-z0-9_]+")


def validate_group_identifier(value: object) -> str:
    """Return ``value`` if it is a valid segment group identifier, else raise."""
    if not isinstance(value, str) or not value:
        raise ValidationError("segment group identifier must be a non-empty string")
    if len(value) > MAX_IDENTIFIER_LENGTH:
        raise ValidationError(
            f"segment group identifier must be at most {MAX_IDENTIFIER_LENGTH} characters"
        )
    if not GROUP_IDENTIFIER_PATTERN.fullmatch(value):
        raise ValidationError(
            f"segment group identifier {value!r} may contain only lower-case letters,"
            " digits and underscores ([a-z0-9_]+)"
        )
    return value


def has_control_characters(value: str) -> bool:
    """True when ``value`` holds a control, format-control or line-separator character."""
    if value.isprintable():  # fast path in C: printable text has none of them
        return False
    return any(unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} for ch in value)


def has_lone_surrogates(value: str) -> bool:
    """True when ``value`` holds a lone surrogate (legal in JSON as ``"\\ud800"``, but not
    Unicode text: no database, log or page can encode it)."""
    if value.isprintable():  # surrogates are not printable: the usual text stops here
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


NOT_UNICODE = "must be valid Unicode text (it holds a lone surrogate such as \\ud800)"


def validate_text_identifier(value: object, what: str) -> str:
    """Validate a free-form identifier (segment id, user id): 1-255 chars, no controls.

    Integers are accepted and normalised to their decimal string, as the CDP may send
    numeric user ids.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError(f"{what} must be a string or an integer, not {type(value).__name__}")
    text = str(value)
    if not text:
        raise ValidationError(f"{what} must not be empty")
    if len(text) > MAX_IDENTIFIER_LENGTH:
        raise ValidationError(f"{what} must be at most {MAX_IDENTIFIER_LENGTH} characters")
    if has_lone_surrogates(text):
        raise ValidationError(f"{what} {NOT_UNICODE}")
    if has_control_characters(text):
        raise ValidationError(f"{what} must not contain control characters")
    return text


def are_plain_user_ids(values: list[Any]) -> bool:
    """True when every value is a valid user id given as text, checked in one pass of C
    loops over the whole list (a delivery may hold a million): all strings (``join``
    refuses anything else), printable (no control, format or separator character, no
    lone surrogate) and 1-255 characters long. False means: check them one by one."""
    try:
        joined = "".join(values)
    except TypeError:
        return False
    return joined.isprintable() and min(map(len, values)) >= 1 and max(map(len, values)) <= MAX_IDENTIFIER_LENGTH


def validate_user_id(value: object) -> str:
    """Return the user id as a string, or raise :class:`ValidationError`."""
    return validate_text_identifier(value, "user id")


def validate_segment_identifier(value: object) -> str:
    """Return the segment (audience) identifier as a string, or raise."""
    return validate_text_identifier(value, "segment identifier")


def validate_name(value: object, what: str = "name") -> str:
    """A display name: non-blank text of at most 255 characters, no control characters."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{what} must be a non-empty string")
    return validate_text_identifier(value.strip(), what)


#: A UUID in its canonical text form, as Raptor's ``rsa`` visitor cookie holds one.
VISITOR_ID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def visitor_id_or_none(value: object) -> str | None:
    """A visitor id (lower case) from a cookie's value; ``None`` for anything not a UUID."""
    if isinstance(value, str) and VISITOR_ID_PATTERN.fullmatch(value):
        return value.lower()
    return None
