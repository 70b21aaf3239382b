"""``cdp.track()``: one event sent from the server, inside or outside a request (SPEC
section 10), for example a buy from a payment provider's webhook."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import has_request_context

from ..errors import ConfigurationError, TrackingArgumentError
from ..identifiers import visitor_id_or_none
from ..page import current_page
from ..state import CDPState
from .events import event_type
from .fields import tracking_user_id
from .wire import Visitor


def track(state: CDPState, type_name: str, *, visitor_id: str | None, session_id: str | None, user_id: object,
          url: str | None, fields: dict[str, Any]) -> bool:
    """Queue one event; whether it was queued (not without consent in a request)."""
    settings = state.settings
    if not settings.account_number:
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
    fields.setdefault("user_id", visitor.user_id)
    row = event_type(type_name, settings.tracking_parameters)
    state.tracking.queue([(row, row.parameters(fields, settings.tracking_parameters))], visitor)
    return True
