"""Set-based membership and segment writes, on a connection inside the caller's transaction.

These are the primitives both the hand-editing API (:mod:`.segments`) and webhook
deliveries use. None of them commits: the caller decides the transaction, so a delivery
is applied whole or not at all. Membership changes go through the dialect's bulk
writer (:mod:`.bulk`), never one ORM round trip per row.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, delete, func, insert, select, update

from ..model import SegmentMetadata
from . import history
from .bulk import chunked, driver_row, member_writer
from .changes import current as recorded_changes
from .tables import CDPTables, utcnow
from .upserts import conflict_insert, insert_skipping_conflicts

#: The one row of ``cdp_store_version``.
STORE_VERSION_ROW = 1


#: The metadata columns a delivery may set, as :class:`SegmentMetadata` names them.
METADATA_COLUMNS = ("name", "description", "tags", "profile_count", "source_updated_at")


@dataclass(frozen=True)
class SegmentRow:
    """The identity, ordering state and metadata of one stored segment."""

    id: int
    identifier: str
    last_sequence: int | None
    #: The stored metadata, by column: what a delivery's metadata is compared with.
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)


def find_segment(
    conn: Connection, tables: CDPTables, group_id: int, identifier: str, *, lock: bool = False
) -> SegmentRow | None:
    """The segment ``identifier`` of a group (row-locked with ``lock``), or ``None``."""
    query, parameters = _segment_query(tables.segments, lock), {"group_id": group_id, "identifier": identifier}
    postgres = conn.dialect.name == "postgresql"  # a delivery's statement, on the driver's cursor: see driver_row
    row = driver_row(conn, query, parameters) if postgres else conn.execute(query, parameters).first()
    if row is None:
        return None
    return SegmentRow(row[0], row[1], row[2], dict(zip(METADATA_COLUMNS, row[3:], strict=True)))


@functools.cache
def _segment_query(segments: Table, lock: bool) -> Select[Any]:
    """Made once per table: building the statement cost as much as running it (a delivery's hot path)."""
    s = segments
    query = select(s.c.id, s.c.identifier, s.c.last_sequence, *(s.c[column] for column in METADATA_COLUMNS)).where(
        s.c.group_id == bindparam("group_id"), s.c.identifier == bindparam("identifier"))
    return query.with_for_update() if lock else query


def ensure_segment(
    conn: Connection,
    tables: CDPTables,
    group_id: int,
    identifier: str,
    name: str | None = None,
    *,
    lock: bool = False,
) -> tuple[SegmentRow, bool]:
    """The segment ``identifier`` of a group, created (named ``name`` or its id) if missing;
    and whether it was created.

    With ``lock`` the row is locked (``FOR UPDATE`` where supported) so concurrent
    deliveries to one audience are ordered by its ``last_sequence``. A segment that
    exists (the common case) costs one statement.
    """
    found = find_segment(conn, tables, group_id, identifier, lock=lock)
    if found is not None:
        return found, False
    s = tables.segments
    now = utcnow()
    values = {"group_id": group_id, "identifier": identifier, "name": name or identifier, "created_at": now,
              "updated_at": now}
    created = conn.execute(insert_skipping_conflicts(conn.dialect.name, s).values(**values).returning(s.c.id)).scalar()
    if created is not None:  # a new row: this transaction holds it until it commits
        return SegmentRow(int(created), identifier, None, {column: values.get(column) for column in METADATA_COLUMNS}), True
    row = find_segment(conn, tables, group_id, identifier, lock=lock)
    assert row is not None  # a concurrent delivery created it and committed first
    return row, False


def update_metadata(conn: Connection, tables: CDPTables, row: SegmentRow, metadata: SegmentMetadata) -> bool:
    """Store the metadata fields that were given; the others keep their values. Whether
    any value changed: a delivery that repeats a segment's name writes nothing."""
    changes: dict[str, Any] = {
        "name": metadata.name,
        "description": metadata.description,
        "tags": list(metadata.tags) if metadata.tags is not None else None,
        "profile_count": metadata.profile_count,
        "source_updated_at": metadata.source_updated_at,
    }
    changed = {key: value for key, value in changes.items() if value is not None and row.metadata.get(key) != value}
    if not changed:
        return False
    s = tables.segments
    conn.execute(update(s).where(s.c.id == row.id).values(**changed, updated_at=utcnow()))
    return True


def record_sequence(conn: Connection, tables: CDPTables, segment_id: int, sequence: int) -> None:
    """Remember the sequence number of the last change applied to a segment."""
    s = tables.segments
    conn.execute(update(s).where(s.c.id == segment_id).values(last_sequence=sequence))


# The writers take each id once: callers pass what validation already de-duplicated (the
# body parser, validate_user_ids), so a million ids are not de-duplicated again here.


def add_members(conn: Connection, tables: CDPTables, segment_id: int, user_ids: Sequence[str]) -> int:
    """Add the users not yet in the segment; return how many were added."""
    if user_ids and (changes := recorded_changes()) is not None:
        present = members_among(conn, tables, segment_id, user_ids)
        changes.note(conn, tables, segment_id, added=[u for u in user_ids if u not in present])
    return member_writer(conn, tables).add_counted(conn, segment_id, user_ids, tables)


def remove_members(conn: Connection, tables: CDPTables, segment_id: int, user_ids: Sequence[str]) -> int:
    """Remove the given users from the segment; return how many were members."""
    if user_ids and (changes := recorded_changes()) is not None:
        present = members_among(conn, tables, segment_id, user_ids)
        changes.note(conn, tables, segment_id, removed=[u for u in user_ids if u in present])
    removed = member_writer(conn, tables).remove(conn, segment_id, user_ids)
    history.count_members(conn, tables, segment_id, -removed)
    return removed


def replace_members(conn: Connection, tables: CDPTables, segment_id: int, user_ids: Sequence[str]) -> tuple[int, int]:
    """Make the segment's members exactly ``user_ids``; return (added, removed)."""
    if (changes := recorded_changes()) is not None:
        current = all_members(conn, tables, segment_id)
        wanted = set(user_ids)
        changes.note(conn, tables, segment_id, added=[u for u in user_ids if u not in current],
                     removed=sorted(current - wanted))
    added, removed = member_writer(conn, tables).replace(conn, segment_id, user_ids)
    history.count_members(conn, tables, segment_id, added - removed)
    return added, removed


def members_among(conn: Connection, tables: CDPTables, segment_id: int, user_ids: Sequence[str]) -> set[str]:
    """Which of ``user_ids`` are members of the segment (read in chunks of bound parameters)."""
    m = tables.memberships
    found: set[str] = set()
    for chunk in chunked(user_ids):
        found.update(conn.scalars(select(m.c.user_id).where(m.c.segment_id == segment_id, m.c.user_id.in_(chunk))))
    return found


def all_members(conn: Connection, tables: CDPTables, segment_id: int) -> set[str]:
    m = tables.memberships
    return set(conn.scalars(select(m.c.user_id).where(m.c.segment_id == segment_id)))


def remove_everywhere(conn: Connection, tables: CDPTables, user_ids: Sequence[str]) -> int:
    """Remove the users from every segment of every group, member counts kept; how many
    memberships there were (forgetting a person, SPEC section 14)."""
    m = tables.memberships
    counts = conn.execute(select(m.c.segment_id, func.count()).where(m.c.user_id.in_(user_ids))
                          .group_by(m.c.segment_id)).all()
    if not counts:
        return 0
    if (changes := recorded_changes()) is not None:
        for segment_id, user_id in conn.execute(select(m.c.segment_id, m.c.user_id).where(m.c.user_id.in_(user_ids))):
            changes.note(conn, tables, segment_id, removed=[user_id])
    conn.execute(delete(m).where(m.c.user_id.in_(user_ids)))
    for segment_id, count in counts:
        history.count_members(conn, tables, segment_id, -int(count))
    return sum(int(count) for _, count in counts)



def lock_audience(conn: Connection, group_id: int, identifier: str) -> None:
    """Serialise every change to one audience until the transaction ends.

    On PostgreSQL a transaction-scoped advisory lock, so two deliveries touching the same
    audience (which may not have a row yet, or is being deleted) check its sequence and
    tombstone one after the other; SQLite already lets only one writer in at a time.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_advisory_key(f"cdp:{group_id}:{identifier}"))))


def group_lock_key(group: str) -> int:
    """The advisory lock key of a group's reconcile lock: a reconcile holds it
    exclusively, each delivery to the group shared."""
    return _advisory_key(f"cdp-reconcile:{group}")


def _advisory_key(name: str) -> int:
    """A PostgreSQL advisory lock's key for ``name``: a signed 64-bit number."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)


def bump_store_version(conn: Connection, tables: CDPTables) -> None:
    """Say that segments changed (created, deleted, renamed, their metadata or sequence):
    processes that kept the segments' names read them again. Membership changes alone
    need no bump: a page reads a user's segment ids fresh every time.

    Call it last in the transaction: the row stays locked until the commit, and every
    writer takes it, so it must be held for as short a time as can be.
    """
    v = tables.store_version
    conn.execute(update(v).where(v.c.id == STORE_VERSION_ROW).values(version=v.c.version + 1))


def ensure_store_version(conn: Connection, tables: CDPTables) -> None:
    """Create the store version's row if it is missing (``flask cdp init-db`` does)."""
    conn.execute(insert_skipping_conflicts(conn.dialect.name, tables.store_version).values(id=STORE_VERSION_ROW, version=0))


def tombstone(conn: Connection, tables: CDPTables, group_id: int, identifier: str) -> int | None:
    """The sequence at which the audience was deleted, if it was."""
    t = tables.tombstones
    found = conn.scalar(select(t.c.sequence).where(t.c.group_id == group_id, t.c.identifier == identifier))
    return int(found) if found is not None else None


def forget_tombstone(conn: Connection, tables: CDPTables, group_id: int, identifier: str) -> None:
    """A newer change recreated the audience: its deletion no longer counts."""
    t = tables.tombstones
    conn.execute(delete(t).where(t.c.group_id == group_id, t.c.identifier == identifier))


def record_tombstone(conn: Connection, tables: CDPTables, group_id: int, identifier: str, sequence: int) -> None:
    """Remember that an audience was deleted at ``sequence`` (keeping the highest)."""
    t = tables.tombstones
    values = {"group_id": group_id, "identifier": identifier, "sequence": sequence, "deleted_at": utcnow()}
    upsert = conflict_insert(conn.dialect.name, t)
    if upsert is not None:
        upsert = upsert.values(**values)
        highest = func.greatest if conn.dialect.name == "postgresql" else func.max  # SQLite's two-argument max
        conn.execute(upsert.on_conflict_do_update(
            index_elements=["group_id", "identifier"],
            set_={"sequence": highest(t.c.sequence, upsert.excluded.sequence), "deleted_at": values["deleted_at"]},
        ))
        return
    conn.execute(delete(t).where(t.c.group_id == group_id, t.c.identifier == identifier))
    conn.execute(insert(t).values(**values))


def delete_segment(conn: Connection, tables: CDPTables, segment_id: int) -> None:
    """Delete a segment and its memberships (explicitly: no foreign key cascades them)."""
    if (changes := recorded_changes()) is not None:
        changes.note(conn, tables, segment_id, removed=sorted(all_members(conn, tables, segment_id)))
    conn.execute(delete(tables.memberships).where(tables.memberships.c.segment_id == segment_id))
    conn.execute(delete(tables.segments).where(tables.segments.c.id == segment_id))
    history.forget_segments(conn, tables, [segment_id])
