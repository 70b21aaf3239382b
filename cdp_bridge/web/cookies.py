"""The first-party visitor cookies, set by the server after consent (SPEC section 10).

Raptor's script sets ``rsa`` itself, and Safari caps a cookie set by script at 7 days,
so a returning visitor looks new after a week. Set by the server, the same cookie lives
``CDP_VISITOR_COOKIE_DAYS``. ``rsa`` is set (and renewed, sliding) in every mode;
``rsaSession`` (20 minutes, sliding) in server and hybrid modes, where no script of
Raptor's runs. An existing valid value is never replaced, only given a new expiry.
In server and hybrid modes the ids of Raptor's email links (``reaid``, ``ruid`` in the
landing page's URL) are kept too, in ``rsaReaid`` and ``rsaRuid`` (365 days, sliding).
Nothing is set without consent.
"""

from __future__ import annotations

import logging

from flask import Response, request

from ..constants import (
    CAMPAIGN_COOKIE_DAYS,
    REAID_COOKIE,
    RUID_COOKIE,
    SESSION_COOKIE,
    SESSION_COOKIE_MINUTES,
    TRACK_PATH,
    VISITOR_COOKIE,
)
from ..errors import TrackingArgumentError
from ..state import current_state
from ..templating.page import current_page, page_if_made

log = logging.getLogger("cdp_bridge.tracking")


def set_visitor_cookies(response: Response) -> Response:
    """An ``after_request`` function: ``Vary: Cookie`` on a response whose content read the
    visitor's cookies (as Flask's session does), so no shared cache serves one visitor's
    personalised page to another; then set or renew the cookies on a page (or an accepted
    hybrid event) of a visitor who consented."""
    page = page_if_made()
    if page is not None and page.read_cookies:
        response.vary.add("Cookie")
    state = current_state()
    settings = state.settings
    if not settings.site.account_number or response.status_code >= 400 or not _is_a_page(response, state.url_prefix):
        return response
    try:
        ids = current_page().tracking_ids  # None without consent
    except TrackingArgumentError as exc:  # the host's consent loader answered nonsense
        log.error("visitor cookies not set: %s", exc)
        return response
    if ids is None:
        return response
    mode = state.mode
    cookies = [(VISITOR_COOKIE, ids[0], settings.tracking.visitor_cookie_days * 86400)]
    if mode.server_keeps_session:  # in client mode Raptor's script keeps these itself
        cookies.append((SESSION_COOKIE, ids[1], SESSION_COOKIE_MINUTES * 60))
        reaid, campaign_ruid = current_page().campaign_ids
        cookies += [(name, value, CAMPAIGN_COOKIE_DAYS * 86400)
                    for name, value in ((REAID_COOKIE, reaid), (RUID_COOKIE, campaign_ruid)) if value]
    for name, value, seconds in cookies:
        response.set_cookie(name, value or "", max_age=seconds, path="/", samesite="Lax", secure=request.is_secure,
                            httponly=mode.http_only_cookies)
    return response


def _is_a_page(response: Response, url_prefix: str | None) -> bool:
    return response.mimetype == "text/html" or request.path == f"{url_prefix or ''}{TRACK_PATH}"
