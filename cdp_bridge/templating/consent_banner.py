"""``{{ cdp_consent_banner() }}``: the consent banner a site needs before Raptor's tracking
(SPEC section 16), so no site copies one from the demo.

An accessible region (labelled, real buttons, keyboard-usable, polite to screen readers)
with the text and the labels the site passes, shown until the visitor chose. Accept
writes ``CDP_CONSENT_COOKIE=yes`` and fires ``enableTracking``, the event
``cdp_main_script`` (and hybrid's shim) wait for, so tracking starts on this page; Decline
writes ``no``. Either hides the banner for good (the cookie is kept a year). With
``withdraw`` (a label), a visitor who accepted gets a button that withdraws consent:
it writes ``no`` and reloads the page, whose response expires every cookie cdp_bridge
set (SPEC section 14). Its style and
script are inline and carry the page's CSP nonce (Flask-Talisman's, or the host's
``@cdp.nonce_provider``, as every helper's); it loads nothing from anywhere. A site with a
consent tool of its own keeps it, and tells cdp_bridge through ``@cdp.consent_loader``.
"""

from __future__ import annotations

import logging

from flask import current_app
from markupsafe import Markup, escape

from ..errors import TrackingArgumentError
from .page import CONSENTING_VALUES, DECLINING_VALUES, current_page, nonce_attribute
from .tracking import cookie_domain_attribute, script_json

log = logging.getLogger("cdp_bridge.tracking")

#: The cookie's values a visitor's choice leaves.
CHOSEN_VALUES = CONSENTING_VALUES | DECLINING_VALUES
DEFAULT_TEXT = "We would like to use Raptor to recommend what you may like. Nothing is sent until you accept."
#: Seconds the choice is kept: a year.
CHOICE_SECONDS = 365 * 86400

STYLE = (
    "#cdp-consent-banner{position:fixed;left:1rem;right:1rem;bottom:1rem;max-width:40rem;margin:auto;z-index:2147483000;"
    "padding:1rem 1.25rem;background:#fff;color:#1a1a1a;border:1px solid #888;border-radius:.5rem;"
    "box-shadow:0 .5rem 1.5rem rgba(0,0,0,.15);font:inherit}"
    "#cdp-consent-banner[hidden]{display:none}"
    "#cdp-consent-banner button{font:inherit;margin:.25rem .5rem 0 0;padding:.4rem .9rem;cursor:pointer}"
    "#cdp-consent-banner button:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}"
)
SCRIPT = (
    '(function(d,n,s,m){var b=d.getElementById("cdp-consent-banner");if(!b)return;'
    "function choose(a){d.cookie=n+\"=\"+a+\"; path=/; max-age=\"+s+\"; samesite=lax\"+m"
    '+(location.protocol==="https:"?"; secure":"");b.hidden=true;'
    'if(a==="yes")d.dispatchEvent(new CustomEvent("enableTracking"));}'
    'd.getElementById("cdp-consent-accept").addEventListener("click",function(){choose("yes");});'
    'd.getElementById("cdp-consent-decline").addEventListener("click",function(){choose("no");});'
    "})(document,%s,%s,%s);"
)
WITHDRAW_SCRIPT = (
    '(function(d,n,s,m){var b=d.getElementById("cdp-consent-withdraw");if(!b)return;'
    'b.addEventListener("click",function(){d.cookie=n+"=no; path=/; max-age="+s+"; samesite=lax"+m'
    '+(location.protocol==="https:"?"; secure":"");location.reload();});})(document,%s,%s,%s);'
)


def cdp_consent_banner(text: str = DEFAULT_TEXT, accept: str = "Accept", decline: str = "Decline", *,
                       label: str = "Tracking consent", withdraw: str | None = None, nonce: str | None = None) -> Markup:
    """The banner (see the module's docstring); once the visitor chose, nothing (or, with
    ``withdraw``, the button that withdraws a given consent), and nothing (one ERROR per
    process) without ``CDP_CONSENT_COOKIE``, which it writes."""
    page = current_page()
    name = page.state.settings.tracking.consent_cookie
    try:
        labels = [("text", text), ("accept", accept), ("decline", decline), ("label", label)]
        for argument, value in labels + ([("withdraw", withdraw)] if withdraw is not None else []):
            if not isinstance(value, str) or not value.strip():
                raise TrackingArgumentError(f"cdp_consent_banner: {argument} must be text, not {value!r:.40}")
        if name is None:
            raise TrackingArgumentError("cdp_consent_banner needs CDP_CONSENT_COOKIE: the cookie it writes")
        attribute = page.nonce_attribute if nonce is None else nonce_attribute(nonce)
    except TrackingArgumentError as exc:
        if current_app.debug:
            raise
        page.state.error_once(log, str(exc))
        return Markup("")
    chosen = page.cookies.get(name, "").strip().lower() if page.in_request else ""
    domain = cookie_domain_attribute(page.state.settings.tracking.cookie_domain)
    if chosen in CONSENTING_VALUES and withdraw is not None:
        return Markup(
            f'<button type="button" id="cdp-consent-withdraw" aria-label="{escape(label)}">{escape(withdraw)}</button>'
            f"<script{attribute}>{WITHDRAW_SCRIPT % (script_json(name), CHOICE_SECONDS, domain)}</script>")
    if chosen in CHOSEN_VALUES:
        return Markup("")
    return Markup(
        f'<style{attribute}>{STYLE}</style>'
        f'<div id="cdp-consent-banner" role="region" aria-label="{escape(label)}" aria-live="polite">'
        f'<p>{escape(text)}</p>'
        f'<button type="button" id="cdp-consent-accept">{escape(accept)}</button>'
        f'<button type="button" id="cdp-consent-decline">{escape(decline)}</button>'
        "</div>"
        f"<script{attribute}>{SCRIPT % (script_json(name), CHOICE_SECONDS, domain)}</script>"
    )

