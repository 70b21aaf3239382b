"""A user's segments as a page reads them: one indexed query a request.

A check needs two things: which segments the user is in, and the names each segment
answers to (its identifier, its name, and both as ``group/…``). Which segments changes
with every delivery, so it is read on every request, from the ``(user_id, segment_id)``
index alone. The names change only when segments do, so a process keeps them all as a
:class:`SegmentCatalogue`, tagged with the store version it was read at; the per-request
read returns the current version too, and a catalogue of another version is read again.
Joining the segment and group tables on every page instead cost more than the index
lookup (measured in ``benchmarks/segments_read.py``).

Every change of segments or memberships raises the store version in its own transaction
(:func:`.membership.bump_store_version`), so what is kept is never answered stale: when
the catalogue and the ids turn out to be of different versions (a delivery committed
between the two reads), the user's segments are read with their names in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, literal_column, select

from ..errors import ValidationError
from ..model import Segment
from .tables import CDPTables

NO_IDS: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SegmentCatalogue:
    """Segments at one store version (``None``: unversioned), and the ids each name a
    check may use stands for (a name can be used in two groups)."""

    version: int | None
    segments: Mapping[int, Segment]
    ids_by_name: Mapping[str, frozenset[int]]

    @classmethod
    def of(cls, version: int | None, segments: Iterable[tuple[int, Segment]]) -> SegmentCatalogue:
        """The catalogue of ``(segment id, segment)`` pairs."""
        kept = dict(segments)
        ids_by_name: dict[str, set[int]] = {}
        for segment_id, segment in kept.items():
            names = {segment.identifier, segment.name}
            if segment.group:
                names |= {f"{segment.group}/{segment.identifier}", f"{segment.group}/{segment.name}"}
            for name in names:
                ids_by_name.setdefault(name, set()).add(segment_id)
        return cls(version, kept, {name: frozenset(ids) for name, ids in ids_by_name.items()})


EMPTY_CATALOGUE = SegmentCatalogue.of(None, ())


class UserSegments:
    """One user's segments: ``segment in user_segments`` matches an identifier or a name,
    optionally as ``"group/segment"``, with one set lookup. The :class:`Segment` values
    come from the catalogue, in group then identifier order."""

    __slots__ = ("segment_ids", "catalogue")

    def __init__(self, segment_ids: frozenset[int], catalogue: SegmentCatalogue) -> None:
        self.segment_ids = segment_ids
        self.catalogue = catalogue

    def __contains__(self, segment: object) -> bool:
        if not isinstance(segment, str) or not segment:
            raise ValidationError("segment must be a non-empty string")
        return not self.segment_ids.isdisjoint(self.catalogue.ids_by_name.get(segment, NO_IDS))

    @property
    def segments(self) -> tuple[Segment, ...]:
        known = self.catalogue.segments
        found = (known[segment_id] for segment_id in self.segment_ids if segment_id in known)
        return tuple(sorted(found, key=lambda segment: (segment.group, segment.identifier)))


#: Nobody's segments: an anonymous visitor's without the CDP API.
NO_SEGMENTS = UserSegments(NO_IDS, EMPTY_CATALOGUE)


def segments_of(segments: Sequence[Segment]) -> UserSegments:
    """Segments from elsewhere (a visitor's, from the CDP API) answering checks alike."""
    catalogue = SegmentCatalogue.of(None, enumerate(segments))
    return UserSegments(frozenset(catalogue.segments), catalogue)


class UserSegmentsRead:
    """The reads a personalised page makes, compiled once per engine to the driver's SQL
    and run on the request's DBAPI connection (or a pooled one). Each reads the store
    version in the same statement, so its answer and its version are one snapshot."""

    def __init__(self, engine: Engine, tables: CDPTables) -> None:
        s, g, m, v = tables.segments, tables.segment_groups, tables.memberships, tables.store_version
        # the one row (membership.STORE_VERSION_ROW); no rows when the table has none
        version = select(v.c.version).where(v.c.id == literal_column("1")).scalar_subquery()
        columns = [s.c.id, s.c.identifier, s.c.name, g.c.identifier, s.c.description, s.c.tags, s.c.profile_count,
                   s.c.source_updated_at, s.c.last_sequence]
        segments = s.join(g, g.c.id == s.c.group_id)
        of_user = m.c.user_id == bindparam("user_id")
        self.engine = engine
        self.member_ids = _Prepared(select(version, m.c.segment_id).where(of_user), engine)
        self.all_segments = _Prepared(select(version, *columns).select_from(segments), engine)
        self.named_member_segments = _Prepared(
            select(version, *columns).select_from(segments.join(m, m.c.segment_id == s.c.id)).where(of_user), engine
        )
        self.processors = [column.type.result_processor(engine.dialect, None) for column in columns]
        #: The catalogue last read; replaced whole, so threads may share it.
        self.catalogue = EMPTY_CATALOGUE

    def __call__(self, user_id: str, connection: Connection | None = None) -> UserSegments:
        if connection is not None:
            return self.read_on(connection.connection.driver_connection, user_id)
        pooled = self.engine.raw_connection()
        try:
            return self.read_on(pooled, user_id)
        finally:
            pooled.close()  # back to the pool, which rolls the read back

    def read_on(self, dbapi_connection: Any, user_id: str) -> UserSegments:
        """The user's segments, read on a DBAPI connection."""
        rows = self.member_ids.fetch(dbapi_connection, user_id)
        if not rows:
            return NO_SEGMENTS
        version = rows[0][0]
        if version is not None and self.catalogue.version != version:
            self.catalogue = self._catalogue(self.all_segments.fetch(dbapi_connection, None))
        catalogue = self.catalogue
        if version is None or catalogue.version != version:
            # The store changed between the two reads, or it has no version: read the
            # user's segments with their names, in one statement.
            catalogue = self._catalogue(self.named_member_segments.fetch(dbapi_connection, user_id))
            return UserSegments(frozenset(catalogue.segments), catalogue)
        return UserSegments(frozenset([row[1] for row in rows]), catalogue)

    def _catalogue(self, rows: Sequence[Sequence[Any]]) -> SegmentCatalogue:
        return SegmentCatalogue.of(rows[0][0] if rows else None, (self._segment(row[1:]) for row in rows))

    def _segment(self, row: Sequence[Any]) -> tuple[int, Segment]:
        values: list[Any] = [value if process is None else process(value) for value, process in zip(row, self.processors)]
        segment_id, identifier, name, group, description, tags, profile_count, updated_at, sequence = values
        return segment_id, Segment(identifier=identifier, name=name, group=group, description=description,
                                   tags=tuple(tags or ()), profile_count=profile_count,
                                   source_updated_at=updated_at, last_sequence=sequence)


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
