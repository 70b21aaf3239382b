"""``POST /cdp/track``: the hybrid mode's endpoint (SPEC section 10).

The head script's shim posts each of the page's events here instead of to Raptor. The
endpoint takes only same-origin requests (``Sec-Fetch-Site``, else ``Origin``) from a
visitor who consented and has an ``rsa`` cookie (the shim sets it before it posts), or a
cookieless one (``CDP_TRACK_WITHOUT_CONSENT=cookieless``: no cookie, no id), JSON
bodies of at most 8 KiB and events whose parameters belong to the tracking tables, at
most 120 a minute per visitor and ``CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE`` per client
address (so rotating or dropping the cookie does not lift the limit; kept by
:mod:`cdp_bridge.rate_limits`, across hosts with Redis); it adds the
visitor's ``coid`` and ``sid`` (the cookies) and ``ruid`` (the logged-in user) and
forwards the event server-side. It answers 204, or a 4xx naming what was wrong.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, Response, current_app, jsonify, request

from ..constants import DEFAULT_TRACKING_PARAMETERS, TRACK_MAX_BYTES, TRACK_PATH, VISITOR_COOKIE
from ..errors import TrackingArgumentError
from ..identifiers import visitor_id_or_none
from ..json_text import UnreadableJSON, read_json
from ..rate_limits import Refusal
from ..state import current_state
from ..templating.page import current_page, utm_pairs
from ..tracking.events import EventType, event_type
from ..tracking.fields import text_value

#: How Flask-WTF's ``CSRFProtect.exempt`` names this view.
VIEW_LOCATION = f"{__name__}.receive_event"


def register_track_endpoint(blueprint: Blueprint) -> None:
    blueprint.add_url_rule(TRACK_PATH, "track", receive_event, methods=["POST"])


def refuse(status: int, error: str, message: str) -> Response:
    response = jsonify(error=error, message=message)
    response.status_code = status
    return response


def too_many(refusal: Refusal) -> Response:
    """429 with ``Retry-After``: over one of the limits of the events sent to Raptor."""
    response = refuse(429, "too_many_events", refusal.message)
    response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def receive_event() -> Response:
    state = current_state()
    settings = state.settings
    if not state.mode.events_through_site or not settings.site.account_number:
        return refuse(404, "not_found", "POST /cdp/track serves CDP_TRACKING_MODE=hybrid only")
    if not _same_origin():
        return refuse(403, "cross_origin", "only the site's own pages may send events here")
    if request.mimetype != "application/json":
        return refuse(415, "unsupported_media_type", "expected Content-Type: application/json")
    if (request.content_length or 0) > TRACK_MAX_BYTES:
        return refuse(413, "payload_too_large", f"an event is at most {TRACK_MAX_BYTES} bytes")
    body = request.stream.read(TRACK_MAX_BYTES + 1)
    if len(body) > TRACK_MAX_BYTES:
        return refuse(413, "payload_too_large", f"an event is at most {TRACK_MAX_BYTES} bytes")
    page = current_page()
    visitor = page.tracking_visitor
    if visitor is None:
        return refuse(403, "no_consent", "the visitor has not consented to tracking")
    if not page.cookieless and visitor_id_or_none(request.cookies.get(VISITOR_COOKIE)) is None:
        return refuse(403, "no_visitor", f"no {VISITOR_COOKIE} cookie holding a visitor id (the page's script sets it)")
    refusal = state.rate_limits.track(request.remote_addr or "", visitor.visitor_id)
    if refusal is not None:
        return too_many(refusal)
    try:
        row, params, url = _event(body, settings.tracking.parameters)
    except TrackingArgumentError as exc:
        return refuse(400, "invalid_event", str(exc))
    try:
        # The page's own utm_* (the shim posts its URL), and the email link's ids the cookies keep.
        # The URL is the page's (the shim's), never this endpoint's.
        page_visitor = dataclasses.replace(visitor, url=url, url_parts=None, utm=utm_pairs(_query_of(url)))
        state.tracking.queue([(row, params)], page_visitor)
    except TrackingArgumentError as exc:  # a value no URL can carry
        return refuse(400, "invalid_event", str(exc))
    return current_app.response_class(status=204)


def _same_origin() -> bool:
    """Browsers send ``Sec-Fetch-Site``; older ones at least ``Origin`` on a POST."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site == "same-origin"
    origin = request.headers.get("Origin")
    return origin is not None and origin.rstrip("/") == request.host_url.rstrip("/")


def _event(body: bytes, overrides: Any) -> tuple[EventType, dict[str, str], str | None]:
    """The event type, its checked parameters, and the page's URL when it is the site's."""
    document = read_json(body)
    if isinstance(document, UnreadableJSON):
        raise TrackingArgumentError(f"the body is not valid JSON: {document.detail}")
    if not isinstance(document, dict):
        raise TrackingArgumentError('expected {"params": {"p1": "<event type>", …}, "url": "<page URL>"}')
    params = document.get("params")
    if not isinstance(params, dict) or not params:
        raise TrackingArgumentError('expected {"params": {"p1": "<event type>", …}, "url": "<page URL>"}')
    type_key = DEFAULT_TRACKING_PARAMETERS["event_type"]
    try:
        row = event_type(params.get(type_key), overrides)
    except TrackingArgumentError:
        raise TrackingArgumentError(f"{type_key} must name a known event type, not {params.get(type_key)!r}") from None
    allowed = set({**DEFAULT_TRACKING_PARAMETERS, **overrides.get(row.name, {})}.values())
    checked: dict[str, str] = {}
    for name, value in params.items():
        if name not in allowed:
            raise TrackingArgumentError(f"{name!s:.40} is not a parameter of {row.name} events")
        if not isinstance(value, str):
            raise TrackingArgumentError(f"{name} must be a string")
        checked[name] = text_value(value, name)
    url = document.get("url")
    page_url = url if isinstance(url, str) and url.startswith(request.host_url) and len(url) <= 2048 else None
    return row, checked, page_url


def _query_of(url: str | None) -> dict[str, str]:
    """The query parameters of the page's URL (the first of each name)."""
    if not url:
        return {}
    found: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query):
        found.setdefault(name, value)
    return found
