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

import functools
import json
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, current_app, g, has_request_context, request
from markupsafe import Markup, escape

from .context import current_state as _state
from .errors import ValidationError
from .identifiers import validate_user_id
from .store import Segment
from .tracking_fields import (
    TrackingArgumentError,
    event_parameters,
    line_subtotal,
    line_fields,
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
_quote = encode_basestring_ascii


def script_json(value: Any) -> str:
    """JSON that is safe inside ``<script>``: no character can close the element or a string."""
    return _script_safe(_ENCODER.encode(value))


def parameters_json(params: dict[str, str]) -> str:
    """:func:`script_json` for a flat string-to-string mapping, the shape of every event."""
    return _script_safe("{" + ",".join(_quote(key) + ":" + _quote(value) for key, value in params.items()) + "}")


def _script_safe(text: str) -> str:
    """Escape what JSON leaves alone but HTML would act on inside a script element."""
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").replace("'", "\\u0027")


def script_helper(render: Callable[..., str]) -> Callable[..., Markup]:
    """Wrap a function returning JavaScript into a Jinja global returning ``<script>``."""

    @functools.wraps(render)
    def helper(*args: Any, nonce: str | None = None, **kwargs: Any) -> Markup:
        state = _state()
        if not state.settings.account_number:
            _warn_unconfigured_once(state)
            return Markup("")
        try:
            code = render(state, *args, **kwargs)
            return Markup(f"<script{_nonce_attribute(state, nonce)}>{code}</script>") if code else Markup("")
        except TrackingArgumentError as exc:
            if current_app.debug:
                raise
            log.error("%s rendered nothing: %s", render.__name__, exc)
            return Markup("")

    return helper


def _warn_unconfigured_once(state: Any) -> None:
    if not state.tracking_warning_logged:
        state.tracking_warning_logged = True
        log.warning("CDP_ACCOUNT_NUMBER is not set: tracking helpers render nothing")


def _nonce_attribute(state: Any, nonce: str | None) -> str:
    if nonce is None:  # the request's own nonce: one attribute string for every helper
        return per_request("_cdp_bridge_nonce_attribute", lambda: _checked_nonce_attribute(_provided_nonce(state))) or ""
    return _checked_nonce_attribute(nonce)


def _checked_nonce_attribute(nonce: str | None) -> str:
    if not nonce:
        return ""
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise TrackingArgumentError("nonce must be a base64 token")
    return f' nonce="{escape(nonce)}"'


def _provided_nonce(state: Any) -> str | None:
    provider = state.extension.nonce_provider_function
    if provider is not None:
        return provider()
    return getattr(request, "csp_nonce", None)  # Flask-Talisman


_UNKNOWN = object()


def per_request(key: str, compute: Callable[[], Any]) -> Any:
    """``compute()`` once per request, kept on ``g``: a page calls several helpers.

    Outside a request there is no user and no nonce: ``None``.
    """
    if not has_request_context():
        return None
    kept = g._get_current_object().__dict__  # type: ignore[attr-defined]  # g's attributes, without a proxy per read
    value = kept.get(key, _UNKNOWN)
    if value is _UNKNOWN:
        value = kept[key] = compute()
    return value


def current_user_id(state: Any = None) -> str | None:
    """The logged-in user's id: the host's ``@cdp.user_id_loader``, else Flask-Login's."""
    return per_request("_cdp_bridge_user_id", lambda: _look_up_user_id(state or _state()))


def _look_up_user_id(state: Any) -> str | None:
    loader = state.extension.user_id_loader_function
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


def _push_event(state: Any, event_type: str, fields: dict[str, Any]) -> str:
    if "user_id" not in fields:  # every caller passes a dict of its own making
        fields["user_id"] = current_user_id(state)
    params = event_parameters(event_type, fields, state.settings.tracking_parameters)
    return f'window.raptor&&window.raptor.push("trackEvent",{parameters_json(params)});'


# -- the globals ----------------------------------------------------------------------


@script_helper
def cdp_head_script(state: Any, customer_id: Any = None) -> str:
    """The ``window.raptor`` queue stub with one queued pageview. Loads nothing."""
    customer = text_value(customer_id, "customer_id") if customer_id is not None else state.settings.account_number
    return HEAD_SNIPPET % script_json(customer)


@script_helper
def cdp_main_script(state: Any, has_consented: bool | None = None) -> str:
    """Load Raptor's script now if consent was given, else on ``enableTracking`` (once)."""
    if has_consented is None:
        has_consented = _consent_cookie_says_yes(state)
    if not isinstance(has_consented, bool):
        raise TrackingArgumentError(f"has_consented must be true, false or None, not {has_consented!r}")
    return MAIN_SNIPPET % (script_json(state.settings.tracking_script_url), "true" if has_consented else "false")


def cdp_tracking_script(customer_id: Any = None, has_consented: bool | None = None, nonce: str | None = None) -> Markup:
    """The head script then the main script."""
    return cdp_head_script(customer_id, nonce=nonce) + cdp_main_script(has_consented, nonce=nonce)


def _consent_cookie_says_yes(state: Any) -> bool:
    name = state.settings.consent_cookie
    if not name or not has_request_context():
        return False
    return request.cookies.get(name, "").strip().lower() in CONSENTING_VALUES


@script_helper
def cdp_track_visit(state: Any, id: Any = None, **fields: Any) -> str:
    """A ``visit`` event; without ``id`` the page's path is the id (a landing page)."""
    if id is None and has_request_context():
        id = request.path
    return _push_event(state, "visit", {"id": id, **fields})


@script_helper
def cdp_track_buy(state: Any, lines: Iterable[Any], order_id: Any = None, currency: Any = None) -> str:
    """One ``buy`` event per order line (``id``, ``price``, ``quantity`` and optional fields)."""
    if type(lines) not in (list, tuple) and (isinstance(lines, (str, bytes)) or not isinstance(lines, Iterable)):
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


@script_helper
def cdp_track_basket(state: Any, id: Any, basket_content: Any, basket_id: Any = None) -> str:
    """A ``basket`` event: the product changed and the whole basket's ids."""
    if id is None:
        raise TrackingArgumentError("id is required")
    if basket_content is None:
        raise TrackingArgumentError("basket_content is required (an empty list for an empty basket)")
    return _push_event(state, "basket", {"id": id, "basket_content": basket_content, "basket_id": basket_id})


@script_helper
def cdp_track_content_visit(state: Any, id: Any, title: Any = None, category_path: Any = None) -> str:
    """A ``contentvisit`` event for an article or other content."""
    if id is None:
        raise TrackingArgumentError("id is required")
    return _push_event(state, "contentvisit", {"id": id, "name": title, "category_path": category_path})


@script_helper
def cdp_track_event(state: Any, event_type: str, **params: Any) -> str:
    """Any event type, with fields by keyword or raw parameters (``p9=…``)."""
    return _push_event(state, event_type, params)


@script_helper
def cdp_set_user(state: Any, user_id: Any = None) -> str:
    """``setRuid`` with the logged-in user's id; nothing for anonymous visitors."""
    if user_id is None:
        user_id = current_user_id(state)
    else:
        try:
            user_id = validate_user_id(user_id)
        except ValidationError as exc:
            raise TrackingArgumentError(f"user_id: {exc}") from None
    return "" if user_id is None else f'window.raptor&&window.raptor.push("setRuid",{script_json(user_id)});'


def cdp_in_segment(segment: str, user_id: Any = None) -> bool:
    """Whether the user (default: the current one) is in ``segment``."""
    user_id = user_id if user_id is not None else current_user_id()
    return user_id is not None and _state().store.is_in_segment(user_id, segment)


def cdp_user_segments(user_id: Any = None) -> list[Segment]:
    """The user's segments (default: the current user's; none for anonymous visitors)."""
    user_id = user_id if user_id is not None else current_user_id()
    return [] if user_id is None else _state().store.segments_for(user_id)


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
