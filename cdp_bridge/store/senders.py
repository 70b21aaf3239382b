"""The counts each process's server-side tracking sender reports: written every minute by
the sender, read by ``flask cdp check`` (which runs in a process of its own)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, Table, func, insert, select, update

from . import history
from .tables import CDPTables, utcnow


class Counts(Protocol):
    @property
    def sent(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def dropped(self) -> int: ...


@dataclass(frozen=True)
class SenderTotals:
    """The senders that reported since a time, and what they did in all."""

    senders: int
    sent: int
    failed: int
    dropped: int


class SenderReports:
    """Keeps each sender's latest counts (one row a sender, for ``flask cdp check``) and
    adds what it did since its previous report to the dashboard's history, in one
    transaction. ``sender`` names the process when it reports (a gunicorn worker forked
    after this was made reports under its own pid)."""

    def __init__(self, engine: Engine, tables: CDPTables, sender: Callable[[], str]) -> None:
        self.engine = engine
        self.tables = tables
        self.sender = sender
        self._previous = (0, 0, 0)

    def __call__(self, counts: Counts) -> None:
        now = (counts.sent, counts.failed, counts.dropped)
        # A count below the previous one is a new sender's: all of it is new.
        new = [count - before if count >= before else count for count, before in zip(now, self._previous, strict=True)]
        table = self.tables.tracking_senders
        sender = self.sender()
        values = {"reported_at": utcnow(), "sent": counts.sent, "failed": counts.failed, "dropped": counts.dropped}
        with self.engine.begin() as conn:
            if conn.execute(update(table).where(table.c.sender == sender).values(**values)).rowcount == 0:
                conn.execute(insert(table).values(sender=sender, **values))
            history.add_counts(conn, self.tables, dict(zip((history.TRACKING_SENT, history.TRACKING_FAILED,
                                                            history.TRACKING_DROPPED), new, strict=True)))
        self._previous = now


def recent_sender_totals(engine: Engine, table: Table, since: datetime) -> SenderTotals:
    query = select(func.count(), func.coalesce(func.sum(table.c.sent), 0), func.coalesce(func.sum(table.c.failed), 0),
                   func.coalesce(func.sum(table.c.dropped), 0)).where(table.c.reported_at >= since)
    with engine.connect() as conn:
        senders, sent, failed, dropped = conn.execute(query).one()
    return SenderTotals(int(senders), int(sent), int(failed), int(dropped))
