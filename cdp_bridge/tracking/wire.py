"""Raptor's server-side tracking request (SPEC section 10), built from an event's
parameters: ``GET {CDP_SERVER_TRACKING_URL}/{account}.rsa?p1=…&pN=…&coid=…&sid=…&ruid=…&url=…``.

Every value is encoded as JavaScript's ``encodeURIComponent`` does (``%20`` for a space,
``+`` and ``&`` escaped, ``!~*'()`` kept), which is what Raptor's script sends and not
what ``quote_plus`` gives. An empty value is left out, except the basket's content: an
empty basket is a fact worth sending.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from ..errors import TrackingArgumentError

#: What encodeURIComponent leaves as it is, beside letters and digits.
URI_COMPONENT_SAFE = "-_.!~*'()"


@dataclass(frozen=True)
class Visitor:
    """Who an event is about: the rsa and rsaSession cookies, the logged-in user, the page."""

    visitor_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    url: str | None = None


def encode_uri_component(value: str) -> str:
    """``encodeURIComponent(value)``; a lone surrogate (which makes JavaScript throw) is an error."""
    try:
        return quote(value, safe=URI_COMPONENT_SAFE, encoding="utf-8", errors="strict")
    except UnicodeEncodeError:
        raise TrackingArgumentError("a tracking value holds a lone surrogate, which no URL can carry") from None


def ruid(user_id: str) -> str:
    """The ``ruid`` parameter: the base64 of the UTF-8 user id."""
    return base64.b64encode(user_id.encode("utf-8")).decode("ascii")


def event_url(base_url: str, account_number: str, params: Mapping[str, str], visitor: Visitor,
              keep_empty: frozenset[str] = frozenset()) -> str:
    """The whole request URL of one event; ``keep_empty`` names parameters sent even when empty."""
    pairs = sorted(params.items(), key=lambda item: int(item[0][1:]))
    pairs += [("coid", visitor.visitor_id or ""), ("sid", visitor.session_id or ""),
              ("ruid", ruid(visitor.user_id) if visitor.user_id else ""), ("url", visitor.url or "")]
    query = "&".join(f"{name}={encode_uri_component(value)}" for name, value in pairs if value or name in keep_empty)
    return f"{base_url}/{encode_uri_component(account_number)}.rsa?{query}"
