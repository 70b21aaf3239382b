"""Validation of the text that crosses cdp_bridge's boundaries: identifiers, user ids,
names and values from outside.

Shared by the settings, the store, the webhook payload, ``/cdp/track``, the tracking
helpers, the clients of Raptor's APIs and the CLI, so that every entry point accepts and
refuses exactly the same text (:func:`text_problem`).
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
CONTROL_CHARACTERS = "must not contain control characters"
LINE_BREAKS = frozenset("\t\n\r")
#: Unicode categories refused in names and ids: controls, format controls (bidi
#: overrides, zero-width characters) and the line and paragraph separators.
STRICT_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def text_problem(text: str, *, max_length: int, line_breaks: bool = False, format_characters: bool = False) -> str | None:
    """Why ``text`` from outside cannot be accepted, or ``None``: the one rule for text
    that enters through the webhook, ``/cdp/track``, Raptor's answers and the helpers.

    Text must be valid Unicode (no lone surrogate: nothing can encode one), at most
    ``max_length`` characters, and free of control characters. Names and ids also refuse
    format controls and separators; ``line_breaks`` admits tab, CR and LF (descriptions,
    tracked values); ``format_characters`` admits format controls and separators
    (tracked values such as emoji sequences, which are escaped on output).
    """
    if len(text) > max_length:
        return f"must be at most {max_length} characters"
    if text.isprintable():  # the usual text has nothing more to check
        return None
    if has_lone_surrogates(text):
        return NOT_UNICODE
    refused = {"Cc"} if format_characters else STRICT_CATEGORIES
    for character in text:
        if unicodedata.category(character) in refused and not (line_breaks and character in LINE_BREAKS):
            return CONTROL_CHARACTERS
    return None


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
    problem = text_problem(text, max_length=MAX_IDENTIFIER_LENGTH)
    if problem is not None:
        raise ValidationError(f"{what} {problem}")
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


#: A version 4 (random) UUID in its canonical text form, as Raptor's ``rsa`` visitor
#: cookie and the hybrid shim hold one: a made-up id such as the all-zero UUID is refused.
VISITOR_ID_PATTERN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}")


def visitor_id_or_none(value: object) -> str | None:
    """A visitor id (lower case) from a cookie's value; ``None`` for anything not a v4 UUID."""
    if isinstance(value, str) and VISITOR_ID_PATTERN.fullmatch(value):
        return value.lower()
    return None


#: An email address as far as cdp_bridge needs one: something@domain.tld, no spaces.
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL_LENGTH = 254


def email_problem(text: str) -> str | None:
    """Why ``text`` is no email address (never repeating it), or ``None``: the one rule for
    an offline buy's customer, an identified visitor and a forgotten person."""
    problem = text_problem(text, max_length=MAX_EMAIL_LENGTH)
    if problem is not None:
        return problem
    return None if EMAIL.fullmatch(text) else "expected an address such as name@example.com"
