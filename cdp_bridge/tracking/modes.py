"""The tracking modes (``CDP_TRACKING_MODE``, SPEC section 10), one row each: what a mode
renders in the page, which cookies the server keeps, and who sends the events.

The state chooses its row once, at registration (as Flask-Caching turns ``CACHE_TYPE``
into one backend), and every helper, endpoint and check asks the row, never the mode's
name: a new mode is one row here, plus its tests and docs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import TrackingMode


@dataclass(frozen=True)
class ModeRules:
    """What one tracking mode does."""

    mode: TrackingMode
    #: Raptor's own script is loaded in the page (``cdp_main_script``, ``cdp_set_user``).
    raptor_script_in_page: bool
    #: The helpers' events are sent by the server, and render no script.
    page_events_from_server: bool
    #: The head script's stub posts the events to the site's ``POST /cdp/track``.
    events_through_site: bool
    #: A recommendation link goes through ``GET /cdp/click``, which sends its itemclick:
    #: no script in the page would.
    clicks_through_site: bool
    #: The server keeps ``rsaSession`` and the email campaign's ids in cookies (Raptor's
    #: script keeps them in client mode).
    server_keeps_session: bool
    #: No script of the page reads the visitor cookies: they are ``HttpOnly``.
    http_only_cookies: bool

    @property
    def server_sends_events(self) -> bool:
        """Whether the site's processes send events to Raptor (and report their counts)."""
        return self.page_events_from_server or self.events_through_site


MODES: dict[TrackingMode, ModeRules] = {
    TrackingMode.CLIENT: ModeRules(TrackingMode.CLIENT, raptor_script_in_page=True, page_events_from_server=False,
                                   events_through_site=False, clicks_through_site=False, server_keeps_session=False,
                                   http_only_cookies=False),
    TrackingMode.SERVER: ModeRules(TrackingMode.SERVER, raptor_script_in_page=False, page_events_from_server=True,
                                   events_through_site=False, clicks_through_site=True, server_keeps_session=True,
                                   http_only_cookies=True),
    TrackingMode.HYBRID: ModeRules(TrackingMode.HYBRID, raptor_script_in_page=False, page_events_from_server=False,
                                   events_through_site=True, clicks_through_site=False, server_keeps_session=True,
                                   http_only_cookies=False),
}
