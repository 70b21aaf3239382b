"""The first-party visitor cookies, set by the server after consent (SPEC section 10).

Raptor's script sets ``rsa`` itself, and Safari caps a cookie set by script at 7 days,
so a returning visitor looks new after a week. Set by the server, the same cookie lives
``CDP_VISITOR_COOKIE_DAYS``. ``rsa`` is set (and renewed, sliding) in every mode;
``rsaSession`` (20 minutes, sliding) in server and hybrid modes, where no script of
Raptor's runs. An existing valid value is never replaced, only given a new expiry.
In server and hybrid modes the ids of Raptor's email links (``reaid``, ``ruid`` in the
landing page's URL) are kept too, in ``rsaReaId`` and ``rsaRuid`` (365 days, sliding),
and ``rsaRuid`` holds the email ``cdp.identify_email`` learnt. Every cookie carries
``CDP_COOKIE_DOMAIN`` when it is set.

Nothing is set without consent, and a visitor whose consent says no (withdrawn, or
``cdp.forget_visitor``) has every one of these cookies expired on the next page
(SPEC section 14); a cookieless visitor (``CDP_TRACK_WITHOUT_CONSENT=cookieless``) gets none.
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
    VISITOR_COOKIES,
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
    page = current_page()
    try:
        ids = page.tracking_ids  # None without consent
    except TrackingArgumentError as exc:  # the host's consent loader answered nonsense
        log.error("visitor cookies not set: %s", exc)
        return response
    if ids is None:
        expire_visitor_cookies(response, settings.tracking.cookie_domain)
        return response
    mode = state.mode
    cookies = [(VISITOR_COOKIE, ids[0], settings.tracking.visitor_cookie_days * 86400)]
    if mode.server_keeps_session:  # in client mode Raptor's script keeps these itself
        cookies.append((SESSION_COOKIE, ids[1], SESSION_COOKIE_MINUTES * 60))
        reaid, campaign_ruid = page.campaign_ids
        cookies += [(name, value, CAMPAIGN_COOKIE_DAYS * 86400)
                    for name, value in ((REAID_COOKIE, reaid), (RUID_COOKIE, campaign_ruid)) if value]
    for name, value, seconds in cookies:
        response.set_cookie(name, value or "", max_age=seconds, path="/", domain=settings.tracking.cookie_domain,
                            samesite="Lax", secure=request.is_secure, httponly=mode.http_only_cookies)
    return response


def expire_visitor_cookies(response: Response, domain: str | None) -> None:
    """Expire each of cdp_bridge's visitor cookies the request carried (host-only, and on
    ``domain`` too when it is set): a visitor without consent keeps none of them."""
    if "rsa" not in request.headers.get("Cookie", ""):  # every name starts so: most pages stop here
        return
    for name in VISITOR_COOKIES:
        if name in request.cookies:
            response.delete_cookie(name, path="/", samesite="Lax", secure=request.is_secure)
            if domain:
                response.delete_cookie(name, path="/", domain=domain, samesite="Lax", secure=request.is_secure)


def _is_a_page(response: Response, url_prefix: str | None) -> bool:
    return response.mimetype == "text/html" or request.path == f"{url_prefix or ''}{TRACK_PATH}"
