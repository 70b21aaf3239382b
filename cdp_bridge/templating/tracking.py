"""Jinja globals that put Raptor's consent-gated tracking into a site's pages (SPEC §5).

Every value is encoded for a ``<script>`` context: JSON with ``<``, ``>``, ``&``, ``'``
and every non-ASCII character escaped, so a product name can never end the script or
inject code. Every ``<script>`` carries the request's CSP nonce when there is one (the
``nonce=`` argument, a provider registered with ``@cdp.nonce_provider``, or
Flask-Talisman's ``request.csp_nonce``).

In server mode (``CDP_TRACKING_MODE``) the event helpers render nothing and queue their
events for the server to send; in hybrid mode the head script adds a shim that posts
the page's events to the site's own endpoint.

Bad arguments raise :class:`TrackingArgumentError` when the app runs in debug mode; in
production the helper renders nothing and logs an error, so a page never breaks for
the sake of tracking. Without ``CDP_ACCOUNT_NUMBER`` the script helpers render nothing
and log one warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, has_request_context, request
from markupsafe import Markup

from ..constants import TRACK_PATH
from ..errors import TrackingArgumentError
from ..store import Segment
from ..tracking.events import EVENT_TYPES, event_type
from ..tracking.fields import line_fields, parameter_positions, text_value, tracking_user_id
from ..tracking.service import BuiltEvent
from .page import Page, current_page, nonce_attribute

log = logging.getLogger("cdp_bridge.tracking")

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
#: Before Raptor's script, for a visitor tracked without cookies (SPEC section 14).
COOKIELESS_SWITCH = "window.raptor&&(window.raptor.noCookies=true);"
#: With recommendation modules: a click on a link of a block (``data-cdp-module``, which
#: every record of ``cdp_recommendations`` renders with ``cdp_click``) pushes an
#: ``itemclick`` with its module as ``am``, to Raptor's script or hybrid's endpoint.
CLICK_SNIPPET = (
    '(function(d,r,k,i,m){d.addEventListener("click",function(e){'
    'var a=e.target&&e.target.closest&&e.target.closest("[data-cdp-module]");if(!a)return;'
    'var p={};p[k]="itemclick";p[i]=a.getAttribute("data-cdp-item");p[m]=a.getAttribute("data-cdp-module");'
    'r.push("trackEvent",p);},true);})(document,window.raptor,%s,%s,%s);'
)
#: Hybrid mode: in place of Raptor's script, each trackEvent goes to the site's own
#: endpoint (same origin, so no blocker sees a tracker), once consent is given. Like
#: Raptor's script, it gives a visitor without them (or with ids that are not v4 UUIDs,
#: which the endpoint refuses) the rsa and rsaSession cookies first,
#: so the page's first events (sent at once, in parallel) carry the same ids; the
#: server's answer then renews them for CDP_VISITOR_COOKIE_DAYS. A cookieless visitor
#: (``CDP_TRACK_WITHOUT_CONSENT=cookieless``, before consent) gets no cookie: the events go
#: at once, without ids; consent given on the page starts full tracking from the next one.
#: Raptor's ``push("trackEvent", type, params, options)`` may name the recommendation
#: module in its third argument (``options.moduleName``, as Raptor's GTM template does):
#: it is sent as the module's parameter (``am``).
HYBRID_SHIM = (
    "(function(r,u,c,k,a,m,d){var on=false;"
    "function id(){var b=crypto.getRandomValues(new Uint8Array(16));b[6]=b[6]&15|64;b[8]=b[8]&63|128;"
    'var h=Array.prototype.map.call(b,function(x){return(x+256).toString(16).slice(1);}).join("");'
    'return h.slice(0,8)+"-"+h.slice(8,12)+"-"+h.slice(12,16)+"-"+h.slice(16,20)+"-"+h.slice(20);}'
    'function keep(n,s){if(!new RegExp("(?:^|; )"+n+"=[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}(?:;|$)","i")'
    '.test(d.cookie))'
    'd.cookie=n+"="+id()+"; path=/; max-age="+s+"; samesite=lax"+m+(location.protocol==="https:"?"; secure":"");}'
    'function send(e){if(String(e.event).toLowerCase()!=="trackevent")return;var p=e.params||{};'
    "if(e.options&&e.options.moduleName&&!p[a])p[a]=String(e.options.moduleName);"
    'fetch(u,{method:"POST",credentials:"same-origin",keepalive:true,headers:{"Content-Type":"application/json"},'
    "body:JSON.stringify({params:p,url:location.href})});}"
    'function start(n){if(on)return;on=true;if(!n){keep("rsa",604800);keep("rsaSession",1200);}var q=r.q;r.q=[];'
    "q.forEach(send);r.push=function(e,p,o){send({event:e,params:p,options:o});};}"
    'if(c){start(false);}else if(k){start(true);}else{d.addEventListener("enableTracking",function(){start(false);});}'
    "})(window.raptor,%s,%s,%s,%s,%s,document);"
)


def cookie_domain_attribute(domain: str | None) -> str:
    """``; domain=…`` as a JavaScript string for the cookies a script writes (the validated
    ``CDP_COOKIE_DOMAIN``), or an empty one: every cookie cdp_bridge writes carries it."""
    return script_json(f"; domain={domain}" if domain else "")


_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def script_json(value: object) -> str:
    """JSON that is safe inside ``<script>``: no character can close the element or a string."""
    return _ENCODER.encode(value).replace("<", "\\u003c").replace(">", "\\u003e").replace(
        "&", "\\u0026").replace("'", "\\u0027")


@dataclass(frozen=True)
class Rendered:
    """What a helper makes: the code of its ``<script>``, and the events the server sends
    (server mode, where the page gets no script). Returned, not left on the page: a
    helper's events go out with its script, or not at all."""

    code: str = ""
    events: tuple[BuiltEvent, ...] = ()

    def __add__(self, other: Rendered) -> Rendered:
        return Rendered(self.code + other.code, self.events + other.events)


def _script(helper: str, nonce: str | None, build: Callable[[Page], Rendered]) -> Markup:
    """``<script>`` around the code ``build`` returns, its events queued for the server;
    the error policy of every helper.

    Without CDP_ACCOUNT_NUMBER: nothing, and one warning. A bad argument: in debug the
    :class:`TrackingArgumentError` is raised; in production nothing is rendered, nothing
    is sent, and one error is logged, so a page never breaks for the sake of tracking.
    """
    page = current_page()
    if not page.state.settings.site.account_number:
        page.state.tracking.warn_unconfigured_once()
        return Markup("")
    try:
        rendered = build(page)
        _send(page, rendered.events)
        if not rendered.code:
            return Markup("")
        attribute = page.nonce_attribute if nonce is None else nonce_attribute(nonce)
        return Markup(f"<script{attribute}>{rendered.code}</script>")
    except TrackingArgumentError as exc:
        if current_app.debug:
            raise
        log.error("%s rendered nothing: %s", helper, exc)
        return Markup("")


def _send(page: Page, events: tuple[BuiltEvent, ...]) -> None:
    """Server mode: queue a helper's events, if the visitor consented."""
    if not events:
        return
    visitor = page.tracking_visitor
    if visitor is not None:
        page.state.tracking.queue(list(events), visitor)


def _push_event(page: Page, type_name: str, fields: dict[str, Any]) -> Rendered:
    if "user_id" not in fields:  # every caller passes a dict of its own making
        fields["user_id"] = page.user_id
    overrides = page.state.settings.tracking.parameters
    row = event_type(type_name, overrides)
    params = row.parameters(fields, overrides)
    if page.state.mode.page_events_from_server:
        return Rendered(events=((row, params),))  # sent by the server: no script
    return Rendered(f'window.raptor&&window.raptor.push("trackEvent",{script_json(params)});')


# -- the globals ----------------------------------------------------------------------


def cdp_head_script(customer_id: object = None, *, nonce: str | None = None) -> Markup:
    """The ``window.raptor`` queue stub with one queued pageview. Loads nothing. In server
    mode it renders nothing and the server sends the pageview; in hybrid mode the stub's
    events go to the site's ``/cdp/track`` once consent is given."""

    def build(page: Page) -> Rendered:
        settings = page.state.settings
        if page.state.mode.page_events_from_server:
            pageview = EVENT_TYPES["pageview"]
            return Rendered(events=((pageview, pageview.parameters({}, settings.tracking.parameters)),))
        customer = text_value(customer_id, "customer_id") if customer_id is not None else settings.site.account_number
        stub = HEAD_SNIPPET % script_json(customer)
        if page.state.mode.events_through_site:
            track_url = f"{page.state.url_prefix or ''}{TRACK_PATH}"
            module_key = parameter_positions("itemclick", settings.tracking.parameters)["module"]
            stub += HYBRID_SHIM % (script_json(track_url), "true" if page.consented else "false",
                                   "true" if page.cookieless else "false", script_json(module_key),
                                   cookie_domain_attribute(settings.tracking.cookie_domain))
        if settings.recommendations_api.modules:
            positions = parameter_positions("itemclick", settings.tracking.parameters)
            stub += CLICK_SNIPPET % (script_json(positions["event_type"]), script_json(positions["id"]),
                                     script_json(positions["module"]))
        return Rendered(stub)

    return _script("cdp_head_script", nonce, build)


def cdp_main_script(has_consented: bool | None = None, *, nonce: str | None = None) -> Markup:
    """Load Raptor's script now if consent was given, else on ``enableTracking`` (once).
    Nothing in server and hybrid modes: no tracking script runs in the browser there."""

    def build(page: Page) -> Rendered:
        if not page.state.mode.raptor_script_in_page:
            return Rendered()
        consented = page.consented if has_consented is None else has_consented
        if not isinstance(consented, bool):
            raise TrackingArgumentError(f"has_consented must be true, false or None, not {has_consented!r}")
        script = MAIN_SNIPPET % (script_json(page.state.settings.tracking.script_url), "true" if consented else "false")
        if not consented and page.cookieless:  # Raptor's own switch: its script tracks, and keeps no cookie
            return Rendered(COOKIELESS_SWITCH + MAIN_SNIPPET % (script_json(page.state.settings.tracking.script_url),
                                                                "true"))
        return Rendered(script)

    return _script("cdp_main_script", nonce, build)


def cdp_tracking_script(customer_id: object = None, has_consented: bool | None = None, nonce: str | None = None) -> Markup:
    """The head script then the main script."""
    return cdp_head_script(customer_id, nonce=nonce) + cdp_main_script(has_consented, nonce=nonce)


def cdp_track_visit(id: object = None, *, nonce: str | None = None, **fields: object) -> Markup:
    """A ``visit`` event; without ``id`` the page's path is the id (a landing page)."""
    if id is None and has_request_context():
        id = request.path
    return _script("cdp_track_visit", nonce, lambda page: _push_event(page, "visit", {"id": id, **fields}))


def cdp_track_buy(lines: Iterable[Any], order_id: object = None, currency: object = None, *,
                  nonce: str | None = None) -> Markup:
    """One ``buy`` event per order line (``id``, ``price``, ``quantity`` and optional fields)."""
    return _script("cdp_track_buy", nonce, lambda page: _buy_events(page, lines, order_id, currency))


def _buy_events(page: Page, lines: Iterable[Any], order_id: object, currency: object) -> Rendered:
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Iterable):
        raise TrackingArgumentError("lines must be a list of order lines")
    rendered = Rendered()
    for index, line in enumerate(lines):
        fields = line_fields(line, index)
        fields.setdefault("currency", currency)
        fields.setdefault("order_id", order_id)
        try:
            rendered += _push_event(page, "buy", fields)
        except TrackingArgumentError as exc:
            raise TrackingArgumentError(f"lines[{index}]: {exc}") from None
    return rendered


def cdp_track_basket(id: object, basket_content: object, basket_id: object = None, *, nonce: str | None = None) -> Markup:
    """A ``basket`` event: the product changed and the whole basket's ids."""

    def build(page: Page) -> Rendered:
        if id is None:
            raise TrackingArgumentError("id is required")
        if basket_content is None:
            raise TrackingArgumentError("basket_content is required (an empty list for an empty basket)")
        return _push_event(page, "basket", {"id": id, "basket_content": basket_content, "basket_id": basket_id})

    return _script("cdp_track_basket", nonce, build)


def cdp_track_content_visit(id: object, title: object = None, category_path: object = None, *,
                            nonce: str | None = None) -> Markup:
    """A ``contentvisit`` event for an article or other content."""

    def build(page: Page) -> Rendered:
        if id is None:
            raise TrackingArgumentError("id is required")
        return _push_event(page, "contentvisit", {"id": id, "name": title, "category_path": category_path})

    return _script("cdp_track_content_visit", nonce, build)


def cdp_track_event(event_type: str, *, nonce: str | None = None, **params: object) -> Markup:
    """Any event type, with fields by keyword or raw parameters (``p9=…``)."""
    return _script("cdp_track_event", nonce, lambda page: _push_event(page, event_type, params))


def cdp_set_user(user_id: object = None, *, nonce: str | None = None) -> Markup:
    """``setRuid`` with the logged-in user's id; nothing for anonymous visitors (nor in
    server and hybrid modes, where the server adds the user to every event)."""

    def build(page: Page) -> Rendered:
        if not page.state.mode.raptor_script_in_page:
            return Rendered()
        chosen = page.user_id if user_id is None else tracking_user_id(user_id)
        return Rendered() if chosen is None else Rendered(
            f'window.raptor&&window.raptor.push("setRuid",{script_json(chosen)});')

    return _script("cdp_set_user", nonce, build)


def cdp_in_segment(segment: str, user_id: object = None) -> bool:
    """Whether the user (default: the current one) is in ``segment``."""
    page = current_page()
    return segment in (page.segments.viewer if user_id is None else page.segments.of_user(user_id))


def cdp_user_segments(user_id: object = None) -> list[Segment]:
    """The user's segments (default: the current user's; none for anonymous visitors)."""
    page = current_page()
    return list((page.segments.viewer if user_id is None else page.segments.of_user(user_id)).segments)


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
