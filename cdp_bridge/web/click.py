"""``GET /cdp/click``: a recommendation link in server mode (SPEC section 13).

Without a browser script, a click on a recommendation block's link is sent by the server:
the link (``item.cdp_href(url)``) comes here with the module, the item and the page to
go to; an ``itemclick`` carrying the module as ``am`` is queued (with consent, as every
server-sent event) and the browser is sent on with 303. The target must be a path on
this site, so the route redirects nowhere else, and not ``/cdp/click`` itself (under any
mount prefix), so one click sends one event. The clicks that send an event count
against ``/cdp/track``'s limits (per client address and per visitor, in the same
storage): past them the answer is 429, and nothing is sent.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote, urlsplit

from flask import Blueprint, redirect, request
from werkzeug.wrappers import Response

from ..constants import CLICK_PATH
from ..errors import TrackingArgumentError
from ..identifiers import text_problem
from ..state import current_state
from ..templating.page import current_page
from ..templating.server_events import track
from .track import refuse, too_many


def register_click_endpoint(blueprint: Blueprint) -> None:
    blueprint.add_url_rule(CLICK_PATH, "click", click_through, methods=["GET"])


def click_through() -> Response:
    state = current_state()
    settings = state.settings
    if not state.mode.clicks_through_site or not settings.recommendations_api.modules:
        return refuse(404, "bad_click", "GET /cdp/click serves recommendation links in CDP_TRACKING_MODE=server")
    module, item, target = request.args.get("m", ""), request.args.get("i", ""), request.args.get("to", "")
    if (not target.startswith("/") or target.startswith("//") or "\\" in target
            or text_problem(target, max_length=2048) is not None):
        return refuse(400, "bad_click", "to must be a path on this site, such as /products/cat-tree")
    if _is_click_path(target, f"{state.url_prefix or ''}{CLICK_PATH}"):
        return refuse(400, "bad_click", "to must not be a recommendation link itself: one click sends one event")
    if module not in settings.recommendations_api.modules:
        return refuse(400, "bad_click", "m must name a module of CDP_RECOMMENDATION_MODULES")
    if not item or text_problem(item, max_length=255) is not None:
        return refuse(400, "bad_click", "i must be the recommended item's id")
    visitor = current_page().tracking_visitor
    if visitor is not None:  # only a click that sends an event counts (and can be refused)
        refusal = state.rate_limits.track(request.remote_addr or "", current_page().visitor_id, endpoint="click")
        if refusal is not None:
            return too_many(refusal)
    referrer = request.referrer
    page_url = referrer if referrer and referrer.startswith(request.host_url) and len(referrer) <= 2048 else None
    try:
        track(state, "itemclick", visitor_id=None, session_id=None, user_id=None, url=page_url,
              fields={"id": item, "module": module})
    except TrackingArgumentError as exc:
        return refuse(400, "bad_click", str(exc))
    return redirect(target, code=303)


def _is_click_path(target: str, click_path: str) -> bool:
    """Whether ``target``'s path is this endpoint's, under any mount prefix (``/shop/cdp/click``),
    however written: percent-encoded, with doubled or trailing slashes, ``.`` or ``..``."""
    path = unquote(urlsplit(target).path)
    normal = posixpath.normpath("/" + path.replace("\\", "/")).replace("//", "/").rstrip("/")
    return normal == click_path or normal.endswith(click_path)
