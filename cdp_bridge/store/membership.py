"""Set-based membership and segment writes, on a connection inside the caller's transaction.

These are the primitives both the hand-editing API (:mod:`.segments`) and webhook
deliveries use. None of them commits: the caller decides the transaction, so a delivery
is applied whole or not at all. Membership changes are a few statements per chunk of
ids, never one ORM round trip per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .tables import CDPTables, utcnow

#: Ids per IN (...) list or per insert batch: well under SQLite's variable limit.
CHUNK_SIZE = 2000


@dataclass(frozen=True)
class SegmentMetadata:
    """What the CDP says about an audience besides its members."""

    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    profile_count: int | None = None
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class SegmentRow:
    """The identity and ordering state of one stored segment."""

    id: int
    identifier: str
    last_sequence: int | None


def chunked(values: Sequence[str], size: int = CHUNK_SIZE) -> Iterator[Sequence[str]]:
    """Consecutive slices of at most ``size`` values."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def find_segment(conn: Connection, tables: CDPTables, group_id: int, identifier: str) -> SegmentRow | None:
    """The segment ``identifier`` of a group, or ``None``."""
    s = tables.segments
    row = conn.execute(
        select(s.c.id, s.c.identifier, s.c.last_sequence).where(
            s.c.group_id == group_id, s.c.identifier == identifier
        )
    ).first()
    return SegmentRow(row.id, row.identifier, row.last_sequence) if row else None


def ensure_segment(
    conn: Connection,
    tables: CDPTables,
    group_id: int,
    identifier: str,
    name: str | None = None,
    *,
    lock: bool = False,
) -> SegmentRow:
    """The segment ``identifier`` of a group, created (named ``name`` or its id) if missing.

    With ``lock`` the row is locked (``FOR UPDATE`` where supported) so concurrent
    deliveries to one audience are ordered by its ``last_sequence``.
    """
    s = tables.segments
    now = utcnow()
    conn.execute(
        _insert_ignore(conn, s).values(
            group_id=group_id, identifier=identifier, name=name or identifier, created_at=now, updated_at=now
        )
    )
    query = select(s.c.id, s.c.identifier, s.c.last_sequence).where(
        s.c.group_id == group_id, s.c.identifier == identifier
    )
    row = conn.execute(query.with_for_update() if lock else query).one()
    return SegmentRow(row.id, row.identifier, row.last_sequence)


def update_metadata(conn: Connection, tables: CDPTables, segment_id: int, metadata: SegmentMetadata) -> None:
    """Store the metadata fields that were given; the others keep their values."""
    changes: dict[str, Any] = {
        "name": metadata.name,
        "description": metadata.description,
        "tags": list(metadata.tags) if metadata.tags is not None else None,
        "profile_count": metadata.profile_count,
        "source_updated_at": metadata.source_updated_at,
    }
    given = {key: value for key, value in changes.items() if value is not None}
    if given:
        s = tables.segments
        conn.execute(update(s).where(s.c.id == segment_id).values(**given, updated_at=utcnow()))


def record_sequence(conn: Connection, tables: CDPTables, segment_id: int, sequence: int) -> None:
    """Remember the sequence number of the last change applied to a segment."""
    s = tables.segments
    conn.execute(update(s).where(s.c.id == segment_id).values(last_sequence=sequence))


def existing_members(conn: Connection, tables: CDPTables, segment_id: int, user_ids: Sequence[str]) -> set[str]:
    """Which of ``user_ids`` are already members of the segment."""
    m = tables.memberships
    found: set[str] = set()
    for chunk in chunked(user_ids):
        found.update(
            conn.scalars(select(m.c.user_id).where(m.c.segment_id == segment_id, m.c.user_id.in_(chunk)))
        )
    return found


def all_members(conn: Connection, tables: CDPTables, segment_id: int) -> set[str]:
    """Every member of the segment."""
    m = tables.memberships
    return set(conn.scalars(select(m.c.user_id).where(m.c.segment_id == segment_id)))


def add_members(conn: Connection, tables: CDPTables, segment_id: int, user_ids: Iterable[str]) -> int:
    """Add the users not yet in the segment; return how many were added."""
    wanted = list(dict.fromkeys(user_ids))
    present = existing_members(conn, tables, segment_id, wanted)
    return _insert_members(conn, tables, segment_id, [u for u in wanted if u not in present])


def _insert_members(conn: Connection, tables: CDPTables, segment_id: int, new_ids: Sequence[str]) -> int:
    now = utcnow()
    statement = _insert_ignore(conn, tables.memberships)
    for chunk in chunked(new_ids):
        conn.execute(statement, [{"segment_id": segment_id, "user_id": u, "created_at": now} for u in chunk])
    return len(new_ids)


def remove_members(conn: Connection, tables: CDPTables, segment_id: int, user_ids: Iterable[str]) -> int:
    """Remove the given users from the segment; return how many were members."""
    m = tables.memberships
    removed = 0
    for chunk in chunked(list(dict.fromkeys(user_ids))):
        result = conn.execute(delete(m).where(m.c.segment_id == segment_id, m.c.user_id.in_(chunk)))
        removed += result.rowcount
    return removed


def replace_members(conn: Connection, tables: CDPTables, segment_id: int, user_ids: Iterable[str]) -> tuple[int, int]:
    """Make the segment's members exactly ``user_ids``; return (added, removed)."""
    wanted = list(dict.fromkeys(user_ids))
    current = all_members(conn, tables, segment_id)
    wanted_set = set(wanted)
    removed = remove_members(conn, tables, segment_id, [u for u in current if u not in wanted_set])
    added = _insert_members(conn, tables, segment_id, [u for u in wanted if u not in current])
    return added, removed


def delete_segment(conn: Connection, tables: CDPTables, segment_id: int) -> None:
    """Delete a segment and its memberships (explicitly: SQLite may run without FK cascades)."""
    conn.execute(delete(tables.memberships).where(tables.memberships.c.segment_id == segment_id))
    conn.execute(delete(tables.segments).where(tables.segments.c.id == segment_id))


def _insert_ignore(conn: Connection, table: Any) -> Any:
    """An INSERT that skips rows violating a unique constraint, in the dialect's own words."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table).prefix_with("IGNORE") if dialect in {"mysql", "mariadb"} else insert(table)
