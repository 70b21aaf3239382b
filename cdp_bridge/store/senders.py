"""The counts each process's server-side tracking sender reports: written every minute by
the sender, read by ``flask cdp check`` (which runs in a process of its own)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Engine, Table, func, insert, select, update

from .tables import utcnow


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


def record_sender_counts(engine: Engine, table: Table, sender: str, counts: Counts) -> None:
    """Keep one sender's latest counts (one row a sender)."""
    values = {"reported_at": utcnow(), "sent": counts.sent, "failed": counts.failed, "dropped": counts.dropped}
    with engine.begin() as conn:
        if conn.execute(update(table).where(table.c.sender == sender).values(**values)).rowcount == 0:
            conn.execute(insert(table).values(sender=sender, **values))


def recent_sender_totals(engine: Engine, table: Table, since: datetime) -> SenderTotals:
    query = select(func.count(), func.coalesce(func.sum(table.c.sent), 0), func.coalesce(func.sum(table.c.failed), 0),
                   func.coalesce(func.sum(table.c.dropped), 0)).where(table.c.reported_at >= since)
    with engine.connect() as conn:
        senders, sent, failed, dropped = conn.execute(query).one()
    return SenderTotals(int(senders), int(sent), int(failed), int(dropped))
