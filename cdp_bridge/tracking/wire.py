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
from functools import cached_property
from urllib.parse import quote

from werkzeug.sansio.utils import get_current_url

from ..errors import TrackingArgumentError
from ..identifiers import has_lone_surrogates

#: What encodeURIComponent leaves as it is, beside letters and digits.
URI_COMPONENT_SAFE = "-_.!~*'()"
LONE_SURROGATE = "a tracking value holds a lone surrogate, which no URL can carry"


@dataclass(frozen=True)
class Visitor:
    """Who an event is about: the rsa and rsaSession cookies, the logged-in user, the page."""

    visitor_id: str | None = None
    session_id: str | None = None
    user_id: str | None = None
    url: str | None = None
    #: From Raptor's email links (the ``rsaReaid`` / ``rsaRuid`` cookies): the email's id,
    #: and its ruid as the link sent it (already base64), which a logged-in user's id overrides.
    reaid: str | None = None
    campaign_ruid: str | None = None
    #: The landing page's ``utm_*`` parameters, for that page's events only.
    utm: tuple[tuple[str, str], ...] = ()
    #: Without ``url``: the page's URL as its parts (scheme, host, root path, path, query
    #: string), which the sender thread joins as Werkzeug's ``request.url`` does. Joining
    #: them (IRI decoding) costs a page some 30 µs; the parts cost nothing.
    url_parts: tuple[str, str, str, str, bytes] | None = None

    @cached_property
    def page_url(self) -> str | None:
        """``url``, else the URL ``url_parts`` make."""
        if self.url is not None or self.url_parts is None:
            return self.url
        return get_current_url(*self.url_parts)

    @cached_property
    def query(self) -> str:
        """``coid=…&sid=…&ruid=…&reaid=…&url=…&utm_…``, encoded once for all of a page's events."""
        pairs = [("coid", self.visitor_id), ("sid", self.session_id),
                 ("ruid", ruid(self.user_id) if self.user_id else self.campaign_ruid), ("reaid", self.reaid),
                 ("url", self.page_url), *self.utm]
        return "&".join(f"{name}={encode_uri_component(value)}" for name, value in pairs if value)


def encode_uri_component(value: str) -> str:
    """``encodeURIComponent(value)``; a lone surrogate (which makes JavaScript throw) is an error."""
    try:
        return quote(value, safe=URI_COMPONENT_SAFE, encoding="utf-8", errors="strict")
    except UnicodeEncodeError:
        raise TrackingArgumentError(LONE_SURROGATE) from None


def ruid(user_id: str) -> str:
    """The ``ruid`` parameter: the base64 of the UTF-8 user id."""
    return base64.b64encode(user_id.encode("utf-8")).decode("ascii")


def event_path(account_number: str, params: Mapping[str, str], visitor: Visitor,
               keep_empty: frozenset[str] = frozenset(), endpoint: str = "rsa",
               extra: tuple[tuple[str, str], ...] = ()) -> str:
    """An event's URL after the tracking host's: ``{account}.{endpoint}?{query}`` (what the
    buy outbox keeps, so the host is the one configured when the buy is sent).
    ``keep_empty`` names parameters sent even when empty; ``endpoint`` is ``rsa`` (a
    visitor's event) or ``stream`` (a buy no page saw), and ``extra`` pairs close the
    query (``source=webhook``)."""
    pairs = sorted(params.items(), key=_parameter_order)
    query = "&".join([f"{name}={encode_uri_component(value)}" for name, value in pairs if value or name in keep_empty]
                     + ([visitor.query] if visitor.query else [])
                     + [f"{name}={encode_uri_component(value)}" for name, value in extra])
    return f"{encode_uri_component(account_number)}.{endpoint}?{query}"


def _parameter_order(item: tuple[str, str]) -> tuple[int, int, str]:
    """``p1`` … ``p999`` in their numbers' order, then named ones (``am``) by name."""
    name = item[0]
    return (0, int(name[1:]), "") if name[1:].isdigit() else (1, 0, name)


@dataclass(frozen=True)
class Event:
    """One event as a page queues it: the sender thread builds its URL, off the request
    path."""

    base_url: str
    account_number: str
    params: Mapping[str, str]
    visitor: Visitor
    keep_empty: frozenset[str] = frozenset()
    endpoint: str = "rsa"
    extra: tuple[tuple[str, str], ...] = ()

    def url(self) -> str:
        return f"{self.base_url}/{self.path()}"

    def path(self) -> str:
        """The URL after the host's (see :func:`event_path`)."""
        return event_path(self.account_number, self.params, self.visitor, self.keep_empty, self.endpoint, self.extra)


def check_encodable(params: Mapping[str, str], visitor: Visitor) -> None:
    """Refuse, while the page is still there to hear it, a value no URL can carry (a lone
    surrogate), so the sender never meets one. (``url_parts`` hold none: Werkzeug decodes
    a request's path with replacement characters.)"""
    if has_lone_surrogates("".join(params.values()) + (visitor.url or "")):
        raise TrackingArgumentError(LONE_SURROGATE)
