"""The segment store's public operations: groups, segments, members and look-ups.

:class:`SegmentStore` is what the Python API, the CLI and the back office use. Each
method validates its input first and runs in one transaction, so a refused call writes
nothing. Groups named by a configured activation are protected: only webhook
deliveries (which use :mod:`.membership` directly) may change them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, literal_column, null, select, union_all, update
from sqlalchemy.exc import IntegrityError

from ..constants import PROTECTED_GROUP_MESSAGE
from ..errors import ConflictError, NotFoundError, ProtectedGroupError, ValidationError
from ..identifiers import (
    validate_group_identifier,
    validate_name,
    validate_segment_identifier,
    validate_user_id,
)
from ..model import SegmentMetadata
from . import membership
from .tables import CDPTables, utcnow


@dataclass(frozen=True)
class SegmentGroup:
    """A segment group as stored, with whether an activation protects it."""

    identifier: str
    name: str
    protected: bool
    segment_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Segment:
    """A segment (a CDP audience) with its metadata."""

    identifier: str
    name: str
    group: str
    description: str | None
    tags: tuple[str, ...]
    profile_count: int | None
    source_updated_at: datetime | None
    last_sequence: int | None
    member_count: int | None = None


class UserSegments:
    """One user's segments, and every name they answer to: a membership check is then a
    set lookup. ``segment in user_segments`` matches an identifier or a name, optionally
    as ``"group/segment"``. The :class:`Segment` values, with their metadata, are built
    only when asked for: most pages only check."""

    __slots__ = ("_rows", "_convert", "_segments", "_names")

    def __init__(self, rows: Sequence[Sequence[Any]], convert: Callable[[Sequence[Any]], Segment]) -> None:
        """``rows`` start with (identifier, name, group identifier); ``convert`` makes a Segment of one."""
        self._rows = rows
        self._convert = convert
        self._segments: tuple[Segment, ...] | None = None
        self._names: frozenset[str] | None = None

    @property
    def names(self) -> frozenset[str]:
        """Every name a check may use, built at the first check."""
        if self._names is None:
            names: set[str] = set()
            for identifier, name, group, *_ in self._rows:
                names.update((identifier, name))
                if group:
                    names.update((f"{group}/{identifier}", f"{group}/{name}"))
            self._names = frozenset(names)
        return self._names

    @property
    def segments(self) -> tuple[Segment, ...]:
        if self._segments is None:
            self._segments = tuple(self._convert(row) for row in self._rows)
        return self._segments

    def __contains__(self, segment: object) -> bool:
        if not isinstance(segment, str) or not segment:
            raise ValidationError("segment must be a non-empty string")
        return segment in self.names


class RecentUserSegments:
    """The segments of the users a process served last, each with the store version it
    was read at: a bounded, thread-safe map (the oldest user is dropped first)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[object, tuple[int, UserSegments]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, user_id: object) -> tuple[int, UserSegments] | None:
        """(the version they were read at, the user's segments), if kept."""
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None:
                self._entries.move_to_end(user_id)
            return entry

    def put(self, user_id: object, version: int | None, segments: UserSegments) -> None:
        if version is None:
            return
        with self._lock:
            self._entries[user_id] = (version, segments)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)


def validate_user_ids(user_ids: Iterable[object]) -> list[str]:
    """Every id as a string, each once, or a :class:`ValidationError` naming the first bad one."""
    if isinstance(user_ids, (str, bytes)):
        raise ValidationError("user ids must be a list of ids, not a single string")
    valid = []
    for index, user_id in enumerate(user_ids):
        try:
            valid.append(validate_user_id(user_id))
        except ValidationError as exc:
            raise ValidationError(f"user id at position {index}: {exc}") from None
    return list(dict.fromkeys(valid))


class SegmentStore:
    """Groups, segments and memberships of one database."""

    def __init__(self, engine: Engine, tables: CDPTables, protected_groups: frozenset[str] = frozenset()):
        self.engine = engine
        self.tables = tables
        self.protected_groups = protected_groups
        self._user_segments_read = _UserSegmentsRead(engine, tables)

    # -- groups -------------------------------------------------------------------------

    def create_group(self, identifier: str, name: str | None = None) -> SegmentGroup:
        """Create a group; ``name`` defaults to the identifier."""
        identifier = validate_group_identifier(identifier)
        name = validate_name(name if name is not None else identifier, "segment group name")
        g = self.tables.segment_groups
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(g.insert().values(identifier=identifier, name=name, created_at=now, updated_at=now))
        except IntegrityError:
            raise ConflictError(f"segment group {identifier!r} already exists") from None
        return self.get_group(identifier)

    def rename_group(self, identifier: str, name: str) -> SegmentGroup:
        """Give a group a new name (refused for protected groups)."""
        name = validate_name(name, "segment group name")
        with self.engine.begin() as conn:
            group_id = self._editable_group_id(conn, identifier)
            g = self.tables.segment_groups
            conn.execute(update(g).where(g.c.id == group_id).values(name=name, updated_at=utcnow()))
        return self.get_group(identifier)

    def delete_group(self, identifier: str) -> None:
        """Delete a group with its segments and memberships (refused for protected groups)."""
        with self.engine.begin() as conn:
            group_id = self._editable_group_id(conn, identifier)
            t = self.tables
            segment_ids = select(t.segments.c.id).where(t.segments.c.group_id == group_id)
            conn.execute(delete(t.memberships).where(t.memberships.c.segment_id.in_(segment_ids)))
            conn.execute(delete(t.segments).where(t.segments.c.group_id == group_id))
            conn.execute(delete(t.tombstones).where(t.tombstones.c.group_id == group_id))
            conn.execute(delete(t.segment_groups).where(t.segment_groups.c.id == group_id))
            membership.bump_store_version(conn, self.tables)

    def get_group(self, identifier: str) -> SegmentGroup:
        """One group, or :class:`NotFoundError`."""
        identifier = validate_group_identifier(identifier)
        for group in self._groups(identifier):
            return group
        raise NotFoundError(f"segment group {identifier!r} does not exist")

    def list_groups(self) -> list[SegmentGroup]:
        """Every group, by identifier."""
        return self._groups(None)

    def _groups(self, identifier: str | None) -> list[SegmentGroup]:
        g, s = self.tables.segment_groups, self.tables.segments
        count = select(func.count()).where(s.c.group_id == g.c.id).scalar_subquery()
        query = select(g, count.label("segment_count")).order_by(g.c.identifier)
        if identifier is not None:
            query = query.where(g.c.identifier == identifier)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            SegmentGroup(
                identifier=r.identifier,
                name=r.name,
                protected=r.identifier in self.protected_groups,
                segment_count=r.segment_count,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in rows
        ]

    def group_id(self, conn: Connection, identifier: str) -> int:
        """The row id of a group, or :class:`NotFoundError`."""
        identifier = validate_group_identifier(identifier)
        g = self.tables.segment_groups
        group_id = conn.scalar(select(g.c.id).where(g.c.identifier == identifier))
        if group_id is None:
            raise NotFoundError(f"segment group {identifier!r} does not exist")
        return int(group_id)

    def _editable_group_id(self, conn: Connection, identifier: str) -> int:
        group_id = self.group_id(conn, identifier)
        if identifier in self.protected_groups:
            raise ProtectedGroupError(PROTECTED_GROUP_MESSAGE)
        return group_id

    # -- segments and members (by hand) -------------------------------------------------

    def add_members(self, group: str, segment: str, user_ids: Iterable[object], *, name: str | None = None) -> int:
        """Add users to a segment, creating it if needed; return how many were new."""
        ids = validate_user_ids(user_ids)
        with self.engine.begin() as conn:
            row = self._editable_segment(conn, group, segment, name)
            added = membership.add_members(conn, self.tables, row.id, ids)
            membership.bump_store_version(conn, self.tables)
            return added

    def remove_members(self, group: str, segment: str, user_ids: Iterable[object]) -> int:
        """Remove users from a segment; return how many were members."""
        ids = validate_user_ids(user_ids)
        with self.engine.begin() as conn:
            row = self._existing_editable_segment(conn, group, segment)
            removed = membership.remove_members(conn, self.tables, row.id, ids)
            membership.bump_store_version(conn, self.tables)
            return removed

    def replace_members(
        self, group: str, segment: str, user_ids: Iterable[object], *, name: str | None = None
    ) -> tuple[int, int]:
        """Make a segment's members exactly ``user_ids``; return (added, removed)."""
        ids = validate_user_ids(user_ids)
        with self.engine.begin() as conn:
            row = self._editable_segment(conn, group, segment, name)
            counts = membership.replace_members(conn, self.tables, row.id, ids)
            membership.bump_store_version(conn, self.tables)
            return counts

    def delete_segment(self, group: str, segment: str) -> None:
        """Delete a segment and its memberships."""
        with self.engine.begin() as conn:
            row = self._existing_editable_segment(conn, group, segment)
            membership.delete_segment(conn, self.tables, row.id)
            membership.bump_store_version(conn, self.tables)

    def _editable_segment(self, conn: Connection, group: str, segment: str, name: str | None) -> membership.SegmentRow:
        segment = validate_segment_identifier(segment)
        name = validate_name(name, "segment name") if name is not None else None
        group_id = self._editable_group_id(conn, group)
        row = membership.ensure_segment(conn, self.tables, group_id, segment, name, lock=True)
        membership.update_metadata(conn, self.tables, row.id, SegmentMetadata(name=name))
        return row

    def _existing_editable_segment(self, conn: Connection, group: str, segment: str) -> membership.SegmentRow:
        segment = validate_segment_identifier(segment)
        row = membership.find_segment(conn, self.tables, self._editable_group_id(conn, group), segment, lock=True)
        if row is None:
            raise NotFoundError(f"segment {segment!r} does not exist in group {group!r}")
        return row

    # -- look-ups -------------------------------------------------------------------------

    def list_segments(self, group: str | None = None, *, offset: int = 0, limit: int | None = None) -> list[Segment]:
        """Segments (of one group, or all) with member counts, by group then identifier."""
        t = self.tables
        members = (
            select(func.count()).where(t.memberships.c.segment_id == t.segments.c.id).scalar_subquery()
        )
        query = self._segment_query().add_columns(members.label("member_count"))
        with self.engine.connect() as conn:
            if group is not None:
                query = query.where(t.segments.c.group_id == self.group_id(conn, group))
            query = query.order_by(t.segment_groups.c.identifier, t.segments.c.identifier)
            rows = conn.execute(query.offset(offset).limit(limit)).all()
        return [_segment(r) for r in rows]

    def members(self, group: str, segment: str, *, offset: int = 0, limit: int | None = None) -> list[str]:
        """A segment's member user ids, sorted."""
        segment = validate_segment_identifier(segment)
        m = self.tables.memberships
        with self.engine.connect() as conn:
            row = membership.find_segment(conn, self.tables, self.group_id(conn, group), segment)
            if row is None:
                raise NotFoundError(f"segment {segment!r} does not exist in group {group!r}")
            query = select(m.c.user_id).where(m.c.segment_id == row.id).order_by(m.c.user_id)
            return list(conn.scalars(query.offset(offset).limit(limit)))

    def segments_for(self, user_id: object) -> list[Segment]:
        """The segments a user belongs to, by group then identifier."""
        return list(self.user_segments(user_id).segments)

    def is_in_segment(self, user_id: object, segment: str) -> bool:
        """Whether a user is in a segment named by identifier, name, or ``group/segment``."""
        return segment in self.user_segments(user_id)

    def user_segments(self, user_id: object, *, connection: Connection | None = None) -> UserSegments:
        """A user's segments, read in one query, ready for any number of checks; on
        ``connection`` when one is already open (a request's), else on a pooled one."""
        return self._user_segments_read(validate_user_id(user_id), connection)

    def store_version(self, *, connection: Connection) -> int | None:
        """The store version (see :func:`membership.bump_store_version`), read on ``connection``."""
        return self._user_segments_read.store_version(connection)

    def user_segments_with_version(
        self, user_id: object, *, connection: Connection | None = None
    ) -> tuple[int | None, UserSegments]:
        """The store version and the user's segments at that version, in one query."""
        return self._user_segments_read.with_version(validate_user_id(user_id), connection)

    def _segment_query(self) -> Any:
        t = self.tables
        return select(t.segments, t.segment_groups.c.identifier.label("group_identifier")).join(
            t.segment_groups, t.segment_groups.c.id == t.segments.c.group_id
        )


def _segment(row: Any) -> Segment:
    mapping = row._mapping
    return Segment(
        identifier=row.identifier,
        name=row.name,
        group=row.group_identifier,
        description=row.description,
        tags=tuple(row.tags or ()),
        profile_count=row.profile_count,
        source_updated_at=row.source_updated_at,
        last_sequence=row.last_sequence,
        member_count=mapping.get("member_count"),
    )


class _UserSegmentsRead:
    """The read every personalised page makes, prepared once per engine.

    The statements are compiled once to the driver's SQL and run on the request's DBAPI
    connection (or a pooled one), and the rows' values are converted by the column
    types' own result processors only when Segment values are asked for: a page that
    only checks pays for one indexed query and a set. The versioned form reads the
    store version in the same statement, so one round trip gives both, consistent.
    """

    def __init__(self, engine: Engine, tables: CDPTables) -> None:
        s, g, m, v = tables.segments, tables.segment_groups, tables.memberships, tables.store_version
        columns = [s.c.identifier, s.c.name, g.c.identifier, s.c.description, s.c.tags, s.c.profile_count,
                   s.c.source_updated_at, s.c.last_sequence]
        memberships = s.join(g, g.c.id == s.c.group_id).join(m, m.c.segment_id == s.c.id)
        user_rows = select(*columns).select_from(memberships).where(m.c.user_id == bindparam("user_id"))
        plain = user_rows.order_by(g.c.identifier, s.c.identifier)
        # The version's row, then the user's segments (ordered here, not in SQL): one
        # statement, one snapshot, two index lookups.
        version_row = v.c.id == literal_column("1")  # the one row (membership.STORE_VERSION_ROW)
        versioned = union_all(
            select(v.c.version, *(null() for _ in columns)).where(version_row),
            select(null(), *columns).select_from(memberships).where(m.c.user_id == bindparam("user_id")),
        )
        self.engine = engine
        self.plain = _Prepared(plain, engine)
        self.versioned = _Prepared(versioned, engine)
        self.version = _Prepared(select(v.c.version).where(version_row), engine)
        self.processors = [column.type.result_processor(engine.dialect, None) for column in columns]

    def __call__(self, user_id: str, connection: Connection | None = None) -> UserSegments:
        return UserSegments(self._rows(self.plain, user_id, connection), self._segment)

    def with_version(self, user_id: str, connection: Connection | None = None) -> tuple[int | None, UserSegments]:
        """(the store version, the user's segments at that version)."""
        rows = self._rows(self.versioned, user_id, connection)
        versions = [row[0] for row in rows if row[0] is not None]
        segments = sorted((row[1:] for row in rows if row[0] is None), key=_by_group_and_identifier)
        return (int(versions[0]) if versions else None), UserSegments(segments, self._segment)

    def store_version(self, connection: Connection) -> int | None:
        """The store version alone (one indexed row)."""
        rows = self._rows(self.version, None, connection)
        return int(rows[0][0]) if rows else None

    def _rows(self, statement: _Prepared, user_id: str | None, connection: Connection | None) -> list[Any]:
        if connection is not None:
            return statement.fetch(connection.connection.driver_connection, user_id)
        pooled = self.engine.raw_connection()
        try:
            return statement.fetch(pooled, user_id)
        finally:
            pooled.close()  # back to the pool, which rolls the read back

    def _segment(self, row: Sequence[Any]) -> Segment:
        values: list[Any] = [value if process is None else process(value) for value, process in zip(row, self.processors)]
        identifier, name, group, description, tags, profile_count, updated_at, sequence = values
        return Segment(identifier=identifier, name=name, group=group, description=description,
                       tags=tuple(tags or ()), profile_count=profile_count, source_updated_at=updated_at,
                       last_sequence=sequence)


def _by_group_and_identifier(row: Sequence[Any]) -> tuple[Any, Any]:
    return row[2], row[0]


class _Prepared:
    """A statement with at most one ``user_id`` parameter, compiled once to the driver's SQL."""

    def __init__(self, statement: Any, engine: Engine) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        self.count = len(compiled.positiontup or ()) if self.positional else 1

    def fetch(self, dbapi_connection: Any, user_id: str | None) -> list[Any]:
        parameters: Any = (user_id,) * self.count if self.positional else {"user_id": user_id}
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(self.sql, parameters)
            return list(cursor.fetchall())
        finally:
            cursor.close()
