"""``cdp.track()``: one event sent from the server, inside or outside a request (SPEC
section 10), for example a buy from a payment provider's webhook; and
``cdp.track_offline_buy()``: an order no browser page saw (a till sale, a payment
provider's webhook), sent to Raptor's ``.stream`` endpoint with ``source=webhook``
(SPEC section 13)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from flask import has_request_context

from ..errors import ConfigurationError, TrackingArgumentError
from ..identifiers import email_problem, visitor_id_or_none
from ..state import CDPState
from ..tracking.events import event_type
from ..tracking.fields import event_parameters, line_fields, tracking_user_id
from ..tracking.wire import Visitor
from .page import current_page


def track(state: CDPState, type_name: str, *, visitor_id: str | None, session_id: str | None, user_id: object,
          url: str | None, fields: dict[str, Any]) -> bool:
    """Queue one event; whether it was queued (not without consent in a request)."""
    settings = state.settings
    if not settings.site.account_number:
        raise ConfigurationError("CDP_ACCOUNT_NUMBER is not set: nothing can be tracked")
    checked_user = None if user_id is None else tracking_user_id(user_id)
    if has_request_context() and visitor_id is None:
        visitor = current_page().tracking_visitor
        if visitor is None:
            return False
        if checked_user is not None or url is not None:
            visitor = dataclasses.replace(visitor, user_id=checked_user or visitor.user_id, url=url or visitor.url)
    else:
        checked_visitor = None if visitor_id is None else visitor_id_or_none(visitor_id)
        checked_session = None if session_id is None else visitor_id_or_none(session_id)
        if (visitor_id is not None and checked_visitor is None) or (session_id is not None and checked_session is None):
            raise TrackingArgumentError("visitor_id and session_id must be UUIDs, as the rsa cookies hold")
        visitor = Visitor(checked_visitor, checked_session, checked_user, url)
    if visitor.user_id is not None and state.is_held(visitor.user_id):  # forgotten: sent without naming them
        visitor = dataclasses.replace(visitor, user_id=None)
    fields.setdefault("user_id", visitor.user_id)
    row = event_type(type_name, settings.tracking.parameters)
    state.tracking.queue([(row, row.parameters(fields, settings.tracking.parameters))], visitor)
    return True


def track_offline_buy(state: CDPState, order_id: object, lines: Iterable[Any], email: object, currency: object = None) -> int:
    """Queue one ``buy`` per order line, sent as ``{CDP_SERVER_TRACKING_URL}/{account}.stream?
    p1=buy&p2=…&p12=…&p13=…&p21=…&ruid=…&source=webhook`` (``ruid``: the email, base64 as
    every ``ruid``). All lines are checked before any is queued; the number queued."""
    settings = state.settings
    if not settings.site.account_number:
        raise ConfigurationError("CDP_ACCOUNT_NUMBER is not set: nothing can be tracked")
    if not isinstance(email, str) or email_problem(email) is not None:
        raise TrackingArgumentError("email must be an email address such as name@example.com")
    if order_id is None or (isinstance(order_id, str) and not order_id.strip()):
        raise TrackingArgumentError("order_id is required")
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Iterable):
        raise TrackingArgumentError("lines must be a list of order lines")
    row = event_type("buy", settings.tracking.parameters)
    built = []
    for index, line in enumerate(lines):
        fields = {key: value for key, value in line_fields(line, index).items() if key in OFFLINE_BUY_FIELDS}
        fields.update(order_id=order_id, currency=currency)
        try:
            built.append((row, event_parameters("buy", fields, settings.tracking.parameters)))
        except TrackingArgumentError as exc:
            raise TrackingArgumentError(f"lines[{index}]: {exc}") from None
    if not built:
        raise TrackingArgumentError("lines must hold at least one order line")
    if state.is_held(email):  # forgotten within the hold window: the email is all these events say
        return 0
    state.tracking.queue(built, Visitor(user_id=email), endpoint="stream", extra=(("source", "webhook"),))
    return len(built)


#: What an offline buy sends of each line (SPEC section 13): no page, so no page's fields.
OFFLINE_BUY_FIELDS = frozenset({"id", "price", "quantity"})
