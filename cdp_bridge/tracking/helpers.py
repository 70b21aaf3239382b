"""Jinja globals that put Raptor's consent-gated tracking into a site's pages (SPEC §5).

Every value is encoded for a ``<script>`` context: JSON with ``<``, ``>``, ``&``, ``'``
and every non-ASCII character escaped, so a product name can never end the script or
inject code. Every ``<script>`` carries the request's CSP nonce when there is one (the
``nonce=`` argument, a provider registered with ``@cdp.nonce_provider``, or
Flask-Talisman's ``request.csp_nonce``).

Bad arguments raise :class:`TrackingArgumentError` when the app runs in debug mode; in
production the helper renders nothing and logs an error, so a page never breaks for
the sake of tracking. Without ``CDP_ACCOUNT_NUMBER`` the script helpers render nothing
and log one warning.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from markupsafe import Markup, escape

from ..errors import TrackingArgumentError, ValidationError
from ..identifiers import validate_user_id
from ..state import CDPState, current_state
from ..store import Segment, UserSegments
from .fields import (
    event_parameters,
    line_fields,
    line_subtotal,
    text_value,
)

log = logging.getLogger("cdp_bridge.tracking")

NONCE = re.compile(r"[A-Za-z0-9+/=_-]{1,256}")
CONSENTING_VALUES = frozenset({"1", "true", "yes"})
HEAD_SNIPPET = (
    'window.raptor||(window.raptor={q:[{event:"trackevent",params:{p1:"pageview"}}],'
    "push:function(event,params,options){this.q.push({event:event,params:params,options:options})},"
    "customerId:%s});"
)
MAIN_SNIPPET = (
    "(function(d,u,c){var done=false,n=d.currentScript&&d.currentScript.nonce;"
    "function load(){if(done)return;done=true;"
    'var g=d.createElement("script");g.async=true;g.src=u;if(n)g.nonce=n;'
    "(d.head||d.documentElement).appendChild(g);}"
    'if(c){load();}else{d.addEventListener("enableTracking",load);}})(document,%s,%s);'
)


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def script_json(value: Any) -> str:
    """JSON that is safe inside ``<script>``: no character can close the element or a string."""
    return _ENCODER.encode(value).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026").replace("'", "\\u0027")


def _script(helper: str, nonce: str | None, build: Callable[[CDPState], str]) -> Markup:
    """``<script>`` around what ``build`` returns; the error policy of every helper.

    Without CDP_ACCOUNT_NUMBER: nothing, and one warning. A bad argument: in debug the
    :class:`TrackingArgumentError` is raised; in production nothing is rendered and one
    error is logged, so a page never breaks for the sake of tracking.
    """
    state = current_state()
    if not state.settings.account_number:
        _warn_unconfigured_once(state)
        return Markup("")
    try:
        code = build(state)
        return Markup(f"<script{_nonce_attribute(state, nonce)}>{code}</script>") if code else Markup("")
    except TrackingArgumentError as exc:
        if current_app.debug:
            raise
        log.error("%s rendered nothing: %s", helper, exc)
        return Markup("")


def _warn_unconfigured_once(state: CDPState) -> None:
    if not state.tracking_warning_logged:
        state.tracking_warning_logged = True
        log.warning("CDP_ACCOUNT_NUMBER is not set: tracking helpers render nothing")


_UNSET = object()


def _nonce_attribute(state: CDPState, nonce: str | None) -> str:
    """`` nonce="…"`` from the argument, else the host's provider or Flask-Talisman's
    (asked once per request: every helper of a page carries the same)."""
    if nonce is None:
        if not has_request_context():
            return ""
        attribute: Any = g.get("_cdp_nonce_attribute", _UNSET)
        if attribute is _UNSET:
            attribute = g._cdp_nonce_attribute = _checked_nonce_attribute(_provided_nonce(state))
        return str(attribute)
    return _checked_nonce_attribute(nonce)


def _checked_nonce_attribute(nonce: Any) -> str:
    if not nonce:
        return ""
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise TrackingArgumentError("nonce must be a base64 token")
    return f' nonce="{escape(nonce)}"'


def _provided_nonce(state: CDPState) -> str | None:
    provider = state.hooks.nonce_provider
    if provider is not None:
        return provider()
    return getattr(request, "csp_nonce", None)  # Flask-Talisman


def current_user_id(state: CDPState | None = None) -> str | None:
    """The logged-in user's id (the host's ``@cdp.user_id_loader``, else Flask-Login's),
    looked up once per request: a page calls several helpers. Outside a request: None."""
    if not has_request_context():
        return None
    user_id: Any = g.get("_cdp_user_id", _UNSET)
    if user_id is _UNSET:
        user_id = g._cdp_user_id = _look_up_user_id(state or current_state())
    return str(user_id) if user_id is not None else None


def _look_up_user_id(state: CDPState) -> str | None:
    loader = state.hooks.user_id_loader
    value = loader() if loader is not None else _flask_login_user_id()
    if value is None:
        return None
    try:
        return validate_user_id(value)
    except ValidationError as exc:
        raise TrackingArgumentError(f"the current user's id: {exc}") from None


def _flask_login_user_id() -> Any:
    if getattr(current_app, "login_manager", None) is None:
        return None
    from flask_login import current_user  # only where the host uses Flask-Login

    return current_user.get_id() if current_user.is_authenticated else None


def _push_event(state: CDPState, event_type: str, fields: dict[str, Any]) -> str:
    if "user_id" not in fields:  # every caller passes a dict of its own making
        fields["user_id"] = current_user_id(state)
    params = event_parameters(event_type, fields, state.settings.tracking_parameters)
    return f'window.raptor&&window.raptor.push("trackEvent",{script_json(params)});'


# -- the globals ----------------------------------------------------------------------


def cdp_head_script(customer_id: Any = None, *, nonce: str | None = None) -> Markup:
    """The ``window.raptor`` queue stub with one queued pageview. Loads nothing."""

    def build(state: CDPState) -> str:
        customer = text_value(customer_id, "customer_id") if customer_id is not None else state.settings.account_number
        return HEAD_SNIPPET % script_json(customer)

    return _script("cdp_head_script", nonce, build)


def cdp_main_script(has_consented: bool | None = None, *, nonce: str | None = None) -> Markup:
    """Load Raptor's script now if consent was given, else on ``enableTracking`` (once)."""

    def build(state: CDPState) -> str:
        consented = _consent_cookie_says_yes(state) if has_consented is None else has_consented
        if not isinstance(consented, bool):
            raise TrackingArgumentError(f"has_consented must be true, false or None, not {has_consented!r}")
        return MAIN_SNIPPET % (script_json(state.settings.tracking_script_url), "true" if consented else "false")

    return _script("cdp_main_script", nonce, build)


def cdp_tracking_script(customer_id: Any = None, has_consented: bool | None = None, nonce: str | None = None) -> Markup:
    """The head script then the main script."""
    return cdp_head_script(customer_id, nonce=nonce) + cdp_main_script(has_consented, nonce=nonce)


def _consent_cookie_says_yes(state: CDPState) -> bool:
    name = state.settings.consent_cookie
    if not name or not has_request_context():
        return False
    return request.cookies.get(name, "").strip().lower() in CONSENTING_VALUES


def cdp_track_visit(id: Any = None, *, nonce: str | None = None, **fields: Any) -> Markup:
    """A ``visit`` event; without ``id`` the page's path is the id (a landing page)."""
    if id is None and has_request_context():
        id = request.path
    return _script("cdp_track_visit", nonce, lambda state: _push_event(state, "visit", {"id": id, **fields}))


def cdp_track_buy(lines: Iterable[Any], order_id: Any = None, currency: Any = None, *,
                  nonce: str | None = None) -> Markup:
    """One ``buy`` event per order line (``id``, ``price``, ``quantity`` and optional fields)."""
    return _script("cdp_track_buy", nonce, lambda state: _buy_events(state, lines, order_id, currency))


def _buy_events(state: CDPState, lines: Iterable[Any], order_id: Any, currency: Any) -> str:
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Iterable):
        raise TrackingArgumentError("lines must be a list of order lines")
    events = []
    for index, line in enumerate(lines):
        fields = line_fields(line, index)
        fields.setdefault("currency", currency)
        fields.setdefault("order_id", order_id)
        try:
            if "subtotal" not in fields:  # line_fields leaves out None
                fields["subtotal"] = line_subtotal(fields["price"], fields["quantity"], fields["currency"])
            events.append(_push_event(state, "buy", fields))
        except TrackingArgumentError as exc:
            raise TrackingArgumentError(f"lines[{index}]: {exc}") from None
    return "".join(events)


def cdp_track_basket(id: Any, basket_content: Any, basket_id: Any = None, *, nonce: str | None = None) -> Markup:
    """A ``basket`` event: the product changed and the whole basket's ids."""

    def build(state: CDPState) -> str:
        if id is None:
            raise TrackingArgumentError("id is required")
        if basket_content is None:
            raise TrackingArgumentError("basket_content is required (an empty list for an empty basket)")
        return _push_event(state, "basket", {"id": id, "basket_content": basket_content, "basket_id": basket_id})

    return _script("cdp_track_basket", nonce, build)


def cdp_track_content_visit(id: Any, title: Any = None, category_path: Any = None, *,
                            nonce: str | None = None) -> Markup:
    """A ``contentvisit`` event for an article or other content."""

    def build(state: CDPState) -> str:
        if id is None:
            raise TrackingArgumentError("id is required")
        return _push_event(state, "contentvisit", {"id": id, "name": title, "category_path": category_path})

    return _script("cdp_track_content_visit", nonce, build)


def cdp_track_event(event_type: str, *, nonce: str | None = None, **params: Any) -> Markup:
    """Any event type, with fields by keyword or raw parameters (``p9=…``)."""
    return _script("cdp_track_event", nonce, lambda state: _push_event(state, event_type, params))


def cdp_set_user(user_id: Any = None, *, nonce: str | None = None) -> Markup:
    """``setRuid`` with the logged-in user's id; nothing for anonymous visitors."""

    def build(state: CDPState) -> str:
        if user_id is None:
            chosen = current_user_id(state)
        else:
            try:
                chosen = validate_user_id(user_id)
            except ValidationError as exc:
                raise TrackingArgumentError(f"user_id: {exc}") from None
        return "" if chosen is None else f'window.raptor&&window.raptor.push("setRuid",{script_json(chosen)});'

    return _script("cdp_set_user", nonce, build)


def cdp_in_segment(segment: str, user_id: Any = None) -> bool:
    """Whether the user (default: the current one) is in ``segment``."""
    return segment in (_current_user_segments() if user_id is None else current_state().user_segments(user_id))


def cdp_user_segments(user_id: Any = None) -> list[Segment]:
    """The user's segments (default: the current user's; none for anonymous visitors)."""
    found = _current_user_segments() if user_id is None else current_state().user_segments(user_id)
    return list(found.segments)


#: An anonymous visitor's segments: none (with no rows, the converter is never called).
_NO_SEGMENTS = UserSegments([], lambda row: Segment(*row))


def _current_user_segments() -> UserSegments:
    """The current user's segments (none for an anonymous visitor), found once per request
    and kept on ``g``: a page's every further check is one lookup."""
    if not has_request_context():
        return _NO_SEGMENTS
    found: UserSegments | None = g.get("_cdp_current_segments")
    if found is None:
        state = current_state()
        user_id = current_user_id(state)
        found = g._cdp_current_segments = _NO_SEGMENTS if user_id is None else state.user_segments(user_id)
    return found


TRACKING_GLOBALS: dict[str, Callable[..., Any]] = {
    "cdp_head_script": cdp_head_script,
    "cdp_main_script": cdp_main_script,
    "cdp_tracking_script": cdp_tracking_script,
    "cdp_track_visit": cdp_track_visit,
    "cdp_track_buy": cdp_track_buy,
    "cdp_track_basket": cdp_track_basket,
    "cdp_track_content_visit": cdp_track_content_visit,
    "cdp_track_event": cdp_track_event,
    "cdp_set_user": cdp_set_user,
    "cdp_in_segment": cdp_in_segment,
    "cdp_user_segments": cdp_user_segments,
}


def register_tracking_globals(app: Flask) -> None:
    """Make every helper available in the app's templates."""
    app.jinja_env.globals.update(TRACKING_GLOBALS)
