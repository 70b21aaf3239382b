"""One app's server-side tracking (SPEC section 10): its sender, and how a page's events
are queued, all or none.

Made once per app at registration. The sender's thread starts with the first event of
each process (so under gunicorn each worker has its own, started after the fork).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.exc import SQLAlchemyError

from ..errors import first_line
from ..metrics import TRACKING_EVENTS
from ..settings import CDPSettings
from .events import EventType
from .outbox import BuyOutbox
from .sender import EventSender, SenderCounts
from .wire import Event, Visitor, check_encodable

log = logging.getLogger("cdp_bridge.tracking")

#: Its child looked up once (``labels`` takes a lock and builds a key each call).
EVENTS_QUEUED = TRACKING_EVENTS.labels("queued")

#: An event as a helper builds it: its type's row and its ``pN`` parameters.
BuiltEvent = tuple[EventType, dict[str, str]]


class TrackingService:
    """Queues an app's server-side events."""

    def __init__(self, settings: CDPSettings, on_report: Callable[[SenderCounts], None] | None = None, *,
                 buy_outbox: Callable[[], BuyOutbox | None] = lambda: None, wake: Callable[[], None] = lambda: None
                 ) -> None:
        """``buy_outbox``: the outbox buys are written to (``None``: the sender's buys lane);
        ``wake``: tells an inline worker that buys wait."""
        self.settings = settings
        self.sender = EventSender(concurrency=settings.tracking.concurrency, on_report=on_report)
        self.buy_outbox = buy_outbox
        self.wake = wake
        self._warned_unconfigured = False

    def queue(self, events: list[BuiltEvent], visitor: Visitor, *, endpoint: str = "rsa",
              extra: tuple[tuple[str, str], ...] = ()) -> None:
        """Queue events, all or none: each is checked before any is queued (a value no URL
        can carry is refused while the page can still hear it); their URLs are built and
        sent off the request path. ``endpoint`` and ``extra``: see :func:`.wire.event_path`."""
        settings = self.settings
        assert settings.site.account_number is not None
        for _, params in events:
            check_encodable(params, visitor)
        built = [(Event(settings.tracking.server_url, settings.site.account_number, params, visitor,
                        keep_empty=event_type.kept_empty(settings.tracking.parameters), endpoint=endpoint, extra=extra),
                  event_type.is_revenue) for event_type, params in events]
        kept = self._keep_buys([event for event, buy in built if buy])
        for event, buy in built:
            if not (buy and kept):
                self.sender.enqueue(event, buy=buy)
        EVENTS_QUEUED.inc(len(events))

    def _keep_buys(self, buys: list[Event]) -> bool:
        """Write buys to the outbox, when it is on; whether they were. If the database
        fails, the buys go to the sender's buys lane instead: never lost, never a 500."""
        outbox = self.buy_outbox() if buys else None
        if outbox is None:
            return False
        try:
            outbox.keep(buys)
        except SQLAlchemyError as exc:
            log.warning("buy outbox: could not write %s (%s); sent from this process's memory instead",
                        "a buy" if len(buys) == 1 else f"{len(buys)} buys", first_line(exc))
            return False
        self.wake()
        return True

    def warn_unconfigured_once(self) -> None:
        """One WARNING per app when a helper is used without ``CDP_ACCOUNT_NUMBER``."""
        if not self._warned_unconfigured:
            self._warned_unconfigured = True
            log.warning("CDP_ACCOUNT_NUMBER is not set: tracking helpers render nothing")
