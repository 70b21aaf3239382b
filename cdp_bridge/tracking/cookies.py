"""The first-party visitor cookies, set by the server after consent (SPEC section 10).

Raptor's script sets ``rsa`` itself, and Safari caps a cookie set by script at 7 days,
so a returning visitor looks new after a week. Set by the server, the same cookie lives
``CDP_VISITOR_COOKIE_DAYS``. ``rsa`` is set (and renewed, sliding) in every mode;
``rsaSession`` (20 minutes, sliding) in server and hybrid modes, where no script of
Raptor's runs. An existing valid value is never replaced, only given a new expiry.
Nothing is set without consent.
"""

from __future__ import annotations

from flask import Response, request

from ..constants import SESSION_COOKIE, SESSION_COOKIE_MINUTES, TRACK_PATH, VISITOR_COOKIE
from ..page import current_page
from ..state import current_state


def set_visitor_cookies(response: Response) -> Response:
    """An ``after_request`` function: set or renew the cookies on a page (or an accepted
    hybrid event) of a visitor who consented."""
    state = current_state()
    settings = state.settings
    if not settings.account_number or response.status_code >= 400 or not _is_a_page(response, state.url_prefix):
        return response
    visitor = current_page().tracking_visitor  # None without consent
    if visitor is None:
        return response
    mode = settings.tracking_mode
    cookies = [(VISITOR_COOKIE, visitor.visitor_id, settings.visitor_cookie_days * 86400)]
    if mode != "client":
        cookies.append((SESSION_COOKIE, visitor.session_id, SESSION_COOKIE_MINUTES * 60))
    for name, value, seconds in cookies:
        response.set_cookie(name, value or "", max_age=seconds, path="/", samesite="Lax", secure=request.is_secure,
                            httponly=mode == "server")
    return response


def _is_a_page(response: Response, url_prefix: str | None) -> bool:
    return response.mimetype == "text/html" or request.path == f"{url_prefix or ''}{TRACK_PATH}"
