"""What a request may do about a visitor's privacy (SPEC section 14): forget them in the
browser (``cdp.forget_visitor``), and tell Raptor the email the site just learnt
(``cdp.identify_email``, ``{{ cdp_set_email(email) }}``).
"""

from __future__ import annotations

import base64

from flask import Response
from markupsafe import Markup

from ..errors import TrackingArgumentError, ValidationError
from ..privacy.erasure import checked_email
from ..web.cookies import expire_visitor_cookies
from .page import Page, current_page
from .tracking import Rendered, _script, script_json


def forget_visitor(response: Response) -> Response:
    """Expire every cookie cdp_bridge set on this visitor on ``response``, and send
    nothing more for them in this request (a visitor who withdrew consent, or asked to be
    forgotten; the consent itself is the site's to record)."""
    page = current_page()
    page.forget_visitor()
    expire_visitor_cookies(response, page.state.settings.tracking.cookie_domain)
    return response


def identify_email(email: object) -> bool:
    """Remember the visitor's email as Raptor's ``ruid`` (base64 of the address), after
    consent: server and hybrid modes keep it in ``rsaRuid`` (365 days, sliding), so later
    events carry it when no user is logged in; in client mode the page's next
    ``cdp_set_email`` (or this request's) pushes it to Raptor's script. Whether it was
    kept: not without consent, nor for a person forgotten within the hold window.
    :class:`ValidationError` for an address that is none."""
    address = checked_email(email)
    page = current_page()
    if not page.in_request or not page.consented or page.state.is_held(address):
        return False
    page.identify(base64.b64encode(address.encode("utf-8")).decode("ascii"))
    return True


def cdp_set_email(email: object, *, nonce: str | None = None) -> Markup:
    """``{{ cdp_set_email(email) }}``: :func:`identify_email`, and in client mode the
    ``setRuid`` push Raptor's script expects. A malformed address renders nothing (in
    debug, the error), as every helper."""

    def build(page: Page) -> Rendered:
        try:
            kept = identify_email(email)
        except ValidationError as exc:
            raise TrackingArgumentError(str(exc)) from None
        if not kept or not page.state.mode.raptor_script_in_page:
            return Rendered()
        return Rendered(f'window.raptor&&window.raptor.push("setRuid",{script_json(page.identified_ruid)});')

    return _script("cdp_set_email", nonce, build)
