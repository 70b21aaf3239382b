"""What a page looks up on the visitor's behalf, each at most once a request: segments
(the store's for a user, the CDP API's for a visitor). Recommendation blocks are kept
in a plain dict on the page (:attr:`~.page.Page.recommendations`).

:class:`~.page.Page` knows who is looking and what they allowed; these accessors hold
what was looked up for them, so a template that checks ten segments or renders a block
twice costs one read, and the page itself stays the record of the request.
"""

from __future__ import annotations

import logging
from typing import Protocol

from flask import current_app

from ..errors import TrackingArgumentError
from ..state import CDPState
from ..store import NO_SEGMENTS, UserSegments
from ..visitors import as_segments
from .once import once

log = logging.getLogger("cdp_bridge.tracking")


class Viewer(Protocol):
    """Who is looking (the page): a logged-in user's id, or a consenting visitor's."""

    state: CDPState
    in_request: bool

    @property
    def user_id(self) -> str | None: ...

    @property
    def visitor_id(self) -> str | None: ...


class SegmentLookups:
    """The segments a page asks about: the viewer's, and any user's by id."""

    def __init__(self, viewer: Viewer) -> None:
        self._viewer = viewer
        self._of_user: dict[str, UserSegments] = {}

    @once
    def viewer(self) -> UserSegments:
        """The segments of whoever is looking: a logged-in user's from the store, a
        visitor's from the CDP API (at most one call a request), else none. A user id
        from the host's loader that is no valid id gives no segments and one ERROR for
        the page (in debug, the error), as the tracking helpers do."""
        try:
            user_id = self._viewer.user_id
        except TrackingArgumentError as exc:
            if current_app.debug:
                raise
            log.error("cdp_in_segment / cdp_user_segments: no segments for this page: %s", exc)
            return NO_SEGMENTS
        if user_id is not None:
            return self.of_user(user_id)
        service = self._viewer.state.visitor_segments
        visitor_id = self._viewer.visitor_id if service is not None else None
        if service is None or visitor_id is None:
            return NO_SEGMENTS
        return as_segments(service.memberships(visitor_id))

    def of_user(self, user_id: object) -> UserSegments:
        """A user's segments, read at most once for this page: every ``cdp_in_segment`` /
        ``cdp_user_segments`` / ``cdp.is_in_segment`` of a request is answered from the set
        the first one loaded. In a request the read joins the request's own database
        connection (the Flask-SQLAlchemy session's, which the page's other queries use too).
        An id that is no valid user id has no segments, and is not kept."""
        state = self._viewer.state
        store = state.store
        if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
            return store.user_segments(user_id)
        key = str(user_id)
        found = self._of_user.get(key)
        if found is None:
            if not state.schema_gate.is_current():  # tables older than this code: no segments, one ERROR
                return NO_SEGMENTS
            in_request = self._viewer.in_request
            connection = state.db.session.connection(bind_arguments={"bind": state.engine}) if in_request else None
            found = self._of_user[key] = store.user_segments(user_id, connection=connection)
        return found
