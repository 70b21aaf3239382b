"""The exact user ids each membership write changed, for ``memberships_changed``.

Only when a host listens: :func:`recording` returns ``None`` otherwise, and the writers
then count as they always have, at no cost. When one does, the membership primitives
(:mod:`.membership`) read, under the segment's lock and in the writing transaction,
which of the given ids were members before they write, so ``added`` holds only the ids
that were not members and ``removed`` only those that were. After the transaction
commits, its owner calls :meth:`MembershipChanges.send`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from .. import signals
from .tables import CDPTables


@dataclass
class SegmentChanges:
    """What one segment's members became: the ids added and removed, in the order seen."""

    group: str
    segment: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


@dataclass
class MembershipChanges:
    """The changes one transaction made, by segment row id."""

    segments: dict[int, SegmentChanges] = field(default_factory=dict)

    def note(self, conn: Connection, tables: CDPTables, segment_id: int, *, added: Collection[str] = (),
             removed: Collection[str] = ()) -> None:
        if not added and not removed:
            return
        found = self.segments.get(segment_id)
        if found is None:  # named now: a deleted segment has no row after the commit
            s, g = tables.segments, tables.segment_groups
            group, segment = conn.execute(select(g.c.identifier, s.c.identifier).join_from(s, g, s.c.group_id == g.c.id)
                                          .where(s.c.id == segment_id)).one()
            found = self.segments[segment_id] = SegmentChanges(group, segment)
        found.added.extend(added)
        found.removed.extend(removed)

    def send(self, source: str) -> None:
        """One ``memberships_changed`` per segment that changed (after the commit)."""
        for change in self.segments.values():
            signals.send(signals.memberships_changed, group=change.group, segment=change.segment,
                         added=list(change.added), removed=list(change.removed), source=source)


_recording: ContextVar[MembershipChanges | None] = ContextVar("cdp_membership_changes", default=None)


@contextmanager
def recording() -> Iterator[MembershipChanges | None]:
    """Record the exact changes of the writes made inside, if anyone listens (else
    ``None``). Wrap the whole transaction; send after it has committed."""
    if not signals.memberships_changed.receivers:
        yield None
        return
    changes = MembershipChanges()
    token = _recording.set(changes)
    try:
        yield changes
    finally:
        _recording.reset(token)


def current() -> MembershipChanges | None:
    """The changes being recorded in this context, if any."""
    return _recording.get()
