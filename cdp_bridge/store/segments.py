"""The segment store's public operations: groups, segments, members and look-ups.

:class:`SegmentStore` is what the Python API, the CLI and the back office use. Each
method validates its input first and runs in one transaction, so a refused call writes
nothing. Groups named by a configured activation are protected: only webhook
deliveries (which use :mod:`.membership` directly) may change them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ..constants import PROTECTED_GROUP_MESSAGE
from ..errors import ConflictError, NotFoundError, ProtectedGroupError, ValidationError
from ..identifiers import (
    validate_group_identifier,
    validate_name,
    validate_segment_identifier,
    validate_user_id,
)
from ..model import Segment, SegmentGroup, SegmentMetadata
from . import history, membership
from .changes import MembershipChanges, recording
from .tables import CDPTables, utcnow
from .user_segments import UserSegments, UserSegmentsRead


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
        self._user_segments_read = UserSegmentsRead(engine, tables)

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
        with self._by_hand() as (conn, changes):
            group_id = self._editable_group_id(conn, identifier)
            t = self.tables
            segment_ids = select(t.segments.c.id).where(t.segments.c.group_id == group_id)
            if changes is not None:
                for segment_id in conn.scalars(segment_ids).all():
                    changes.note(conn, t, segment_id, removed=sorted(membership.all_members(conn, t, segment_id)))
            conn.execute(delete(t.memberships).where(t.memberships.c.segment_id.in_(segment_ids)))
            history.forget_segments(conn, t, segment_ids)
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
        with self._by_hand() as (conn, _):
            row = self._editable_segment(conn, group, segment, name)
            added = membership.add_members(conn, self.tables, row.id, ids)
            membership.bump_store_version(conn, self.tables)
        return added

    def remove_members(self, group: str, segment: str, user_ids: Iterable[object]) -> int:
        """Remove users from a segment; return how many were members."""
        ids = validate_user_ids(user_ids)
        with self._by_hand() as (conn, _):
            row = self._existing_editable_segment(conn, group, segment)
            removed = membership.remove_members(conn, self.tables, row.id, ids)
            membership.bump_store_version(conn, self.tables)
        return removed

    def replace_members(
        self, group: str, segment: str, user_ids: Iterable[object], *, name: str | None = None
    ) -> tuple[int, int]:
        """Make a segment's members exactly ``user_ids``; return (added, removed)."""
        ids = validate_user_ids(user_ids)
        with self._by_hand() as (conn, _):
            row = self._editable_segment(conn, group, segment, name)
            counts = membership.replace_members(conn, self.tables, row.id, ids)
            membership.bump_store_version(conn, self.tables)
        return counts

    def delete_segment(self, group: str, segment: str) -> None:
        """Delete a segment and its memberships."""
        with self._by_hand() as (conn, _):
            row = self._existing_editable_segment(conn, group, segment)
            membership.delete_segment(conn, self.tables, row.id)
            membership.bump_store_version(conn, self.tables)

    @contextmanager
    def _by_hand(self) -> Iterator[tuple[Connection, MembershipChanges | None]]:
        """The transaction of a change by hand (the back office, or the host's code), and
        what it changed if anyone listens: ``memberships_changed`` with ``source="admin"``
        once it has committed."""
        with recording() as changes:
            with self.engine.begin() as conn:
                yield conn, changes
            if changes is not None:
                changes.send("admin")

    def _editable_segment(self, conn: Connection, group: str, segment: str, name: str | None) -> membership.SegmentRow:
        segment = validate_segment_identifier(segment)
        name = validate_name(name, "segment name") if name is not None else None
        group_id = self._editable_group_id(conn, group)
        row, _ = membership.ensure_segment(conn, self.tables, group_id, segment, name, lock=True)
        membership.update_metadata(conn, self.tables, row, SegmentMetadata(name=name))
        return row

    def _existing_editable_segment(self, conn: Connection, group: str, segment: str) -> membership.SegmentRow:
        segment = validate_segment_identifier(segment)
        row = membership.find_segment(conn, self.tables, self._editable_group_id(conn, group), segment, lock=True)
        if row is None:
            raise NotFoundError(f"segment {segment!r} does not exist in group {group!r}")
        return row

    # -- look-ups -------------------------------------------------------------------------

    def list_segments(self, group: str | None = None, *, offset: int = 0, limit: int | None = None) -> list[Segment]:
        """Segments (of one group, or all) with member counts (kept with each change, not
        counted here), by group then identifier."""
        t = self.tables
        query = self._segment_query()
        with self.engine.connect() as conn:
            if group is not None:
                query = query.where(t.segments.c.group_id == self.group_id(conn, group))
            query = query.order_by(t.segment_groups.c.identifier, t.segments.c.identifier)
            rows = conn.execute(query.offset(offset).limit(limit)).all()
        return [_segment(r) for r in rows]

    def get_segment(self, group: str, segment: str) -> Segment:
        """One segment, with its metadata and member count."""
        with self.engine.connect() as conn:
            return _segment(self._segment_row(conn, group, segment))

    def _segment_row(self, conn: Connection, group: str, segment: str) -> Any:
        """A segment's row (its id, metadata, count and group) in one query, or
        :class:`NotFoundError`; a malformed identifier is a :class:`ValidationError`."""
        group, segment = validate_group_identifier(group), validate_segment_identifier(segment)
        t = self.tables
        row = conn.execute(self._segment_query().where(
            t.segment_groups.c.identifier == group, t.segments.c.identifier == segment)).first()
        if row is None:
            raise NotFoundError(f"segment {segment!r} does not exist in group {group!r}")
        return row

    def recount_members(self) -> int:
        """Count every segment's members afresh, in one transaction; how many segments.
        The counts are kept with each change; processes of a version before
        ``0007_member_counts`` did not keep them, so a rolling upgrade ends with this."""
        s, m = self.tables.segments, self.tables.memberships
        members = select(func.count()).where(m.c.segment_id == s.c.id).scalar_subquery()
        with self.engine.begin() as conn:
            recounted = int(conn.execute(update(s).values(member_count=members)).rowcount)
            history.note_members(conn, self.tables)
            return recounted

    def members(self, group: str, segment: str) -> list[str]:
        """All of a segment's member user ids, sorted (for tests and small segments; the
        back office pages with :meth:`members_page`)."""
        m = self.tables.memberships
        with self.engine.connect() as conn:
            segment_id = self._segment_row(conn, group, segment).id
            return list(conn.scalars(select(m.c.user_id).where(m.c.segment_id == segment_id).order_by(m.c.user_id)))

    def members_page(self, group: str, segment: str, *, after: str | None = None, at: str | None = None,
                     before: str | None = None, limit: int = 50) -> MembersPage:
        """One page of a segment's members in user-id order, found by key rather than by
        offset, so a page deep in a million members costs what the first does (an index
        range): the ``limit`` ids after ``after``, from ``at`` on (a jump to a user id),
        or the ``limit`` ids before ``before``; the first page without any. The segment
        itself (metadata, member count) comes with the page, from one query."""
        m = self.tables.memberships
        with self.engine.connect() as conn:
            row = self._segment_row(conn, group, segment)
            in_segment = m.c.segment_id == row.id
            if before is not None:
                rows = list(conn.scalars(select(m.c.user_id).where(in_segment, m.c.user_id < before)
                                         .order_by(m.c.user_id.desc()).limit(limit + 1)))
                members = rows[:limit][::-1]
                has_previous = len(rows) > limit
                has_next = self._any_member(conn, in_segment, m.c.user_id >= before)
            else:
                bound = m.c.user_id > after if after is not None else m.c.user_id >= at if at is not None else None
                query = select(m.c.user_id).where(in_segment, *([bound] if bound is not None else []))
                rows = list(conn.scalars(query.order_by(m.c.user_id).limit(limit + 1)))
                members, has_next = rows[:limit], len(rows) > limit
                first = members[0] if members else after if after is not None else at
                has_previous = first is not None and self._any_member(conn, in_segment, m.c.user_id < first)
        return MembersPage(_segment(row), members, has_previous, has_next)

    def _any_member(self, conn: Connection, *conditions: Any) -> bool:
        """Whether a membership meets the conditions (one index probe)."""
        m = self.tables.memberships
        return conn.scalar(select(select(m.c.user_id).where(*conditions).exists())) is True

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

    def _segment_query(self) -> Any:
        t = self.tables
        return select(t.segments, t.segment_groups.c.identifier.label("group_identifier")).join(
            t.segment_groups, t.segment_groups.c.id == t.segments.c.group_id
        )


@dataclass(frozen=True)
class MembersPage:
    """A page of a segment's members, and whether there are more on either side."""

    segment: Segment
    members: list[str]
    has_previous: bool
    has_next: bool


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
