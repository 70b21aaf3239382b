"""A user's segments as a page reads them: one indexed query a request.

A check needs two things: which segments the user is in, and the names each segment
answers to (its identifier, its name, and both as ``group/…``). Which segments changes
with every delivery, so it is read on every request, from the ``(user_id, segment_id)``
index alone. The names change only when segments do, so a process keeps them all as a
:class:`SegmentCatalogue`, tagged with the store version it was read at; the per-request
read returns the current version too, and a catalogue of another version is read again.
Joining the segment and group tables on every page instead cost more than the index
lookup (measured in ``benchmarks/segments_read.py``).

Every change of the segments themselves (created, deleted, renamed, their metadata)
raises the store version in its own transaction (:func:`.membership.bump_store_version`);
a change of memberships alone need not, as the ids are read fresh. So what is kept is
never answered stale: when
the catalogue and the ids turn out to be of different versions (a delivery committed
between the two reads), the user's segments are read with their names in one statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, bindparam, literal_column, select

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
    """The reads a personalised page makes, as SQLAlchemy Core statements run on the
    request's connection (or a pooled one), so engine events, query recording and debug
    toolbars see them. Each reads the store version in the same statement, so its answer
    and its version are one snapshot."""

    def __init__(self, engine: Engine, tables: CDPTables) -> None:
        s, g, m, v = tables.segments, tables.segment_groups, tables.memberships, tables.store_version
        # the one row (membership.STORE_VERSION_ROW); no rows when the table has none
        version = select(v.c.version).where(v.c.id == literal_column("1")).scalar_subquery().label("version")
        columns = [s.c.id, s.c.identifier, s.c.name, g.c.identifier.label("group_identifier"), s.c.description,
                   s.c.tags, s.c.profile_count, s.c.source_updated_at, s.c.last_sequence]
        segments = s.join(g, g.c.id == s.c.group_id)
        of_user = m.c.user_id == bindparam("user_id")
        self.engine = engine
        self.member_ids = select(version, m.c.segment_id).where(of_user)
        self.all_segments = select(version, *columns).select_from(segments)
        self.named_member_segments = select(version, *columns).select_from(
            segments.join(m, m.c.segment_id == s.c.id)).where(of_user)
        #: The catalogue last read; replaced whole, so threads may share it.
        self.catalogue = EMPTY_CATALOGUE

    def __call__(self, user_id: str, connection: Connection | None = None) -> UserSegments:
        if connection is not None:
            return self.read_on(connection, user_id)
        with self.engine.connect() as pooled:  # rolled back when it goes back to the pool
            return self.read_on(pooled, user_id)

    def read_on(self, connection: Connection, user_id: str) -> UserSegments:
        """The user's segments, read on ``connection``."""
        rows = connection.execute(self.member_ids, {"user_id": user_id}).all()
        if not rows:
            return NO_SEGMENTS
        version = rows[0].version
        if version is not None and self.catalogue.version != version:
            self.catalogue = _catalogue(connection.execute(self.all_segments).all())
        catalogue = self.catalogue
        if version is None or catalogue.version != version:
            # The store changed between the two reads, or it has no version: read the
            # user's segments with their names, in one statement.
            catalogue = _catalogue(connection.execute(self.named_member_segments, {"user_id": user_id}).all())
            return UserSegments(frozenset(catalogue.segments), catalogue)
        return UserSegments(frozenset(row.segment_id for row in rows), catalogue)


def _catalogue(rows: Sequence[Row[Any]]) -> SegmentCatalogue:
    return SegmentCatalogue.of(rows[0].version if rows else None, (
        (row.id, Segment(identifier=row.identifier, name=row.name, group=row.group_identifier,
                         description=row.description, tags=tuple(row.tags or ()), profile_count=row.profile_count,
                         source_updated_at=row.source_updated_at, last_sequence=row.last_sequence))
        for row in rows))
