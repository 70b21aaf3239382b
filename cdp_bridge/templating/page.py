"""What every cdp_bridge helper of one request shares, looked up once per request.

A page calls several helpers (a visit event, a buy event, a few segment checks).
:func:`current_page` makes one :class:`Page` per request and keeps it on ``g``: who is
looking and what they allowed (the user, the visitor, consent, the nonce, the campaign
ids), each looked up when a helper first needs it. What is looked up on their behalf
(segments, recommendation blocks) is held by the small accessors of :mod:`.lookups`.
This is the only per-request cache of cdp_bridge.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Mapping
from typing import Any

from flask import current_app, request
from flask.globals import _cv_request  # the request context's ContextVar (Flask >= 2.2; has_request_context reads it)
from markupsafe import escape

from ..constants import OLD_REAID_COOKIE, REAID_COOKIE, RUID_COOKIE, SESSION_COOKIE, UTM_PARAMETERS, VISITOR_COOKIE
from ..errors import TrackingArgumentError, ValidationError
from ..identifiers import text_problem, validate_user_id, visitor_id_or_none
from ..state import CDPState, current_state, state_of
from ..tracking.wire import Visitor
from .lookups import SegmentLookups
from .once import once

NONCE = re.compile(r"[A-Za-z0-9+/=_-]{1,256}")
CONSENTING_VALUES = frozenset({"1", "true", "yes"})
#: The consent cookie's values of a visitor who declined (the banner writes ``no``).
DECLINING_VALUES = frozenset({"0", "false", "no"})


class Page:
    """The current request as the helpers see it (outside a request: no user, no nonce)."""

    def __init__(self, state: CDPState, in_request: bool) -> None:
        self.state = state
        self.in_request = in_request
        #: Whether a helper read the visitor's cookies (consent, ``rsa``, the campaign ids):
        #: the response then depends on them and says so (``Vary: Cookie``).
        self.read_cookies = False
        #: The email the site learnt this request (``cdp.identify_email``), base64 as Raptor's ``ruid``.
        self.identified_ruid: str | None = None
        #: ``cdp.forget_visitor`` was called: the visitor's cookies go, nothing more is sent.
        self.visitor_forgotten = False

    @property
    def cookies(self) -> Mapping[str, str]:
        """The request's cookies, noting that the page read them."""
        self.read_cookies = True
        return request.cookies

    @once
    def user_id(self) -> str | None:
        """The logged-in user's id (the host's ``@cdp.user_id_loader``, else Flask-Login's)."""
        if not self.in_request:
            return None
        loader = self.state.hooks.user_id_loader
        value = loader() if loader is not None else _flask_login_user_id()
        if value is None:
            return None
        try:
            return validate_user_id(value)
        except ValidationError as exc:
            raise TrackingArgumentError(f"the current user's id: {exc}") from None

    @once
    def nonce_attribute(self) -> str:
        """`` nonce="…"`` from the host's provider or Flask-Talisman's, else nothing."""
        if not self.in_request:
            return ""
        provider = self.state.hooks.nonce_provider
        return nonce_attribute(provider() if provider is not None else getattr(request, "csp_nonce", None))

    @once
    def consented(self) -> bool:
        """Whether the visitor consented to tracking: the host's ``@cdp.consent_loader``,
        else the ``CDP_CONSENT_COOKIE`` cookie (``1``/``true``/``yes``); no by default (and
        no once ``cdp.forget_visitor`` was called)."""
        if not self.in_request or self.visitor_forgotten:
            return False
        loader = self.state.hooks.consent_loader
        if loader is not None:
            answer = loader()
            if not isinstance(answer, bool):
                raise TrackingArgumentError(f"@cdp.consent_loader must return true or false, not {answer!r}")
            return answer
        name = self.state.settings.tracking.consent_cookie
        return name is not None and self.cookies.get(name, "").strip().lower() in CONSENTING_VALUES

    @once
    def visitor_id(self) -> str | None:
        """The visitor's first-party ``rsa`` cookie, if it holds a UUID and the visitor
        consented; else ``None`` (no cookie is read without consent)."""
        if not self.consented:
            return None
        return visitor_id_or_none(self.cookies.get(VISITOR_COOKIE))

    @once
    def tracking_ids(self) -> tuple[str, str] | None:
        """The visitor's ``rsa`` and ``rsaSession`` ids, with consent: the cookies', or new
        ones for a visitor without them (the response sets them). ``None`` without consent."""
        if not self.consented:
            return None
        cookies = self.cookies
        return (visitor_id_or_none(cookies.get(VISITOR_COOKIE)) or str(uuid.uuid4()),
                visitor_id_or_none(cookies.get(SESSION_COOKIE)) or str(uuid.uuid4()))

    @property
    def cookieless(self) -> bool:
        """A visitor who has not consented, tracked without any cookie or id
        (``CDP_TRACK_WITHOUT_CONSENT=cookieless``)."""
        return (self.in_request and not self.visitor_forgotten and not self.consented
                and self.state.settings.privacy.cookieless_before_consent)

    @once
    def tracking_visitor(self) -> Visitor | None:
        """Who this request's server-side events are about: the ids, the logged-in user
        and the page's URL; ``None`` without consent (a cookieless visitor's: the page
        alone). One for all of the page's events. A person forgotten within the hold
        window is not named (no ``ruid``)."""
        url_parts = (request.scheme, request.host, request.root_path, request.path, request.query_string)
        ids = self.tracking_ids
        if ids is None:
            return Visitor(utm=utm_pairs(request.args), url_parts=url_parts) if self.cookieless else None
        reaid, campaign_ruid = self.campaign_ids
        user_id = self.user_id
        if self._held(user_id, campaign_ruid):
            user_id = campaign_ruid = None
        return Visitor(visitor_id=ids[0], session_id=ids[1], user_id=user_id, reaid=reaid,
                       campaign_ruid=campaign_ruid, utm=utm_pairs(request.args), url_parts=url_parts)

    def _held(self, user_id: str | None, campaign_ruid: str | None) -> bool:
        """Whether the user, or the email a campaign ruid holds, was forgotten within the
        hold window (one indexed read, only when there is someone to name)."""
        email = decoded_ruid(campaign_ruid) if campaign_ruid is not None else None
        return self.state.is_held(*(value for value in (user_id, email) if value is not None))

    @once
    def campaign_ids(self) -> tuple[str | None, str | None]:
        """``reaid`` and ``ruid`` of Raptor's email links: from the landing page's URL, else
        the cookies the server keeps them in; none without consent. A value of the wrong
        form is ignored (it came from outside; the page goes on)."""
        if not self.consented:
            return None, None
        args, cookies = request.args, self.cookies
        reaid = (_id_or_none(present(args, "reaid"), REAID) or _id_or_none(present(cookies, REAID_COOKIE), REAID)
                 or _id_or_none(present(cookies, OLD_REAID_COOKIE), REAID))
        return (reaid, self.identified_ruid or _id_or_none(present(args, "ruid"), BASE64)
                or _id_or_none(present(cookies, RUID_COOKIE), BASE64))

    def identify(self, ruid: str) -> None:
        """The email the site learnt this request (base64, as Raptor's ``ruid``): the
        response keeps it, and this request's later events carry it."""
        self.identified_ruid = ruid
        for name in ("campaign_ids", "tracking_visitor"):
            self.__dict__.pop(name, None)

    def forget_visitor(self) -> None:
        """From now on this request treats the visitor as not consenting: nothing is sent,
        and the response expires their cookies (``cdp.forget_visitor``)."""
        self.visitor_forgotten = True
        for name in ("consented", "tracking_ids", "tracking_visitor", "campaign_ids", "visitor_id"):
            self.__dict__.pop(name, None)

    @once
    def segments(self) -> SegmentLookups:
        """The segments this page asks about (the viewer's, a user's), each read once."""
        return SegmentLookups(self)

    @once
    def recommendations(self) -> dict[str, tuple[tuple[str, Any], ...]]:
        """The recommendation blocks this page rendered, by their answer's cache key: one
        API call and one loader call a page, however often the page renders a block."""
        return {}


def current_page() -> Page:
    """This request's :class:`Page`, made on the first call and kept on the request's own
    context (gone with it; ``g`` may outlive a request: an app context the test client
    reuses); outside a request, a new one each call (nothing is kept).

    Read straight from Flask's request-context variable: through the ``g`` proxy a look-up
    cost 0.9 us, most of a segment check's cost, and a page makes several."""
    context = _cv_request.get(None)
    if context is None:
        return Page(current_state(), in_request=False)
    page: Page | None = getattr(context, PAGE_ATTRIBUTE, None)
    if page is None:
        page = Page(state_of(context.app), in_request=True)
        setattr(context, PAGE_ATTRIBUTE, page)
    return page


def page_if_made() -> Page | None:
    """This request's :class:`Page` if a helper made one (an ``after_request`` function's
    question: it must not make one)."""
    context = _cv_request.get(None)
    page: Page | None = getattr(context, PAGE_ATTRIBUTE, None) if context is not None else None
    return page


def forget_page() -> None:
    """Drop this request's :class:`Page`, as a new request starts without one (benchmarks)."""
    context = _cv_request.get(None)
    if context is not None and hasattr(context, PAGE_ATTRIBUTE):
        delattr(context, PAGE_ATTRIBUTE)


#: Where the request's context keeps its page.
PAGE_ATTRIBUTE = "_cdp_bridge_page"


#: Raptor's email id (an opaque token) and a ruid as the email link sends it (base64).
REAID = re.compile(r"[A-Za-z0-9._~+/=-]{1,255}")
BASE64 = re.compile(r"[A-Za-z0-9+/_-]{1,1020}={0,2}")


def decoded_ruid(value: str) -> str | None:
    """The text a base64 ``ruid`` holds (an email), or ``None`` if it holds none."""
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_" if "-" in value or "_" in value
                                else None, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def _id_or_none(value: str | None, form: re.Pattern[str]) -> str | None:
    return value if value is not None and form.fullmatch(value) else None


def present(values: Mapping[str, str], name: str) -> str | None:
    """``values.get(name)`` for a query string's or the cookies' values, without Werkzeug's
    ``MultiDict.get``, which raises and catches a ``BadRequestKeyError`` for each missing
    name: a page looks for nine names it usually has not."""
    return values[name] if name in values else None  # noqa: SIM401 - the docstring says why


def utm_pairs(args: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The ``utm_*`` parameters of a page's URL that are acceptable text, in their usual order."""
    pairs = []
    for name in UTM_PARAMETERS:
        value = present(args, name)
        if value and text_problem(value, max_length=255) is None:
            pairs.append((name, value))
    return tuple(pairs)


def nonce_attribute(nonce: object) -> str:
    """`` nonce="…"`` for a valid nonce, nothing for none; :class:`TrackingArgumentError` else."""
    if not nonce:
        return ""
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise TrackingArgumentError("nonce must be a base64 token")
    return f' nonce="{escape(nonce)}"'


def _flask_login_user_id() -> Any:
    if getattr(current_app, "login_manager", None) is None:
        return None
    from flask_login import current_user  # only where the host uses Flask-Login

    return current_user.get_id() if current_user.is_authenticated else None
