"""The back office dashboard's figures over time, kept in ``cdp_history``.

Two kinds of series, each kept per hour and per day (the start of the hour or day, UTC):

- a segment's member count (series ``members``, subject the segment's row id): written
  in the transaction that changed the count, as the count after the change, so a chart
  reads the figures and never counts members. An hour (a day) with no change carries
  the figure of the one before.
- counts of what happened (deliveries applied, tracking events sent…): each event adds
  to its hour's and its day's figure. The subject is a shard: 0, or on PostgreSQL for a
  delivery applied by the webhook one of ``COUNT_SHARDS`` (its id's remainder), so
  deliveries in flight together add to different rows instead of each waiting for one
  row until the one before has committed (with fsync on, a flush to disk each: a third
  of the webhook's throughput). A figure is the sum of its shards.

Both periods are kept for ``CDP_HISTORY_DAYS``: a 30-day chart reads 30 rows a series,
a 24-hour chart 24, whatever the traffic was. The worker prunes older rows
(:class:`HistoryPruning`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, func, insert, literal, or_, select, union_all, update

from .tables import CDPTables, utcnow
from .upserts import conflict_insert

HOUR, DAY = "hour", "day"
MEMBERS = "members"
#: The counted series, by chart.
DELIVERIES_APPLIED, DELIVERIES_FAILED, REJECTED_IDS = "deliveries.applied", "deliveries.failed", "deliveries.rejected_ids"
TRACKING_SENT, TRACKING_FAILED, TRACKING_DROPPED = "tracking.sent", "tracking.failed", "tracking.dropped"
ERASURES_REQUESTED, ERASURES_ACCEPTED, ERASURES_GIVEN_UP = "erasures.requested", "erasures.accepted", "erasures.given_up"
RECONCILES_OK, RECONCILES_FAILED, RECONCILE_CHANGES = "reconciles.ok", "reconciles.failed", "reconciles.changes"

#: The rows a counted series' bucket is spread over on the webhook's path (see the module's docstring).
COUNT_SHARDS = 16

#: The dashboard's periods: their buckets' length and how many end at the current one.
PERIODS: dict[str, tuple[str, int]] = {"24h": (HOUR, 24), "7d": (DAY, 7), "30d": (DAY, 30)}


def bucket_start(period: str, moment: datetime) -> datetime:
    """The start of the hour or day ``moment`` falls in."""
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if period == HOUR else hour.replace(hour=0)


def bucket_starts(name: str, now: datetime | None = None) -> list[datetime]:
    """The buckets of a dashboard period (``24h``, ``7d``, ``30d``), oldest first, the
    last one the current hour or day."""
    period, count = PERIODS[name]
    step = timedelta(hours=1) if period == HOUR else timedelta(days=1)
    last = bucket_start(period, now or utcnow())
    return [last - step * (count - 1 - index) for index in range(count)]


# -- writing ----------------------------------------------------------------------------


def buckets_now() -> dict[str, datetime]:
    """This hour's and this day's bucket, by period."""
    now = utcnow()
    return {HOUR: bucket_start(HOUR, now), DAY: bucket_start(DAY, now)}


def postgres_noted(history: Table) -> str:
    """A PostgreSQL CTE, ``noted``, that writes the figure of each ``(id, member_count)``
    row of the CTE ``counted`` for this hour and this day (two ``%s``: the hour's and the
    day's bucket): the count and its history in the statement that changed the count."""
    return (f"noted AS (INSERT INTO {history.name} (series, subject, period, bucket, value)"
            f" SELECT '{MEMBERS}', c.id, p.period, p.bucket, c.member_count FROM counted c"
            f" CROSS JOIN (VALUES ('{HOUR}', %s::timestamp), ('{DAY}', %s::timestamp)) AS p(period, bucket)"
            " ON CONFLICT (series, subject, period, bucket) DO UPDATE SET value = excluded.value)")


def postgres_counting(history: Table, source: str, counts: Sequence[tuple[str, str]]) -> str:
    """A PostgreSQL CTE, ``counting``, that adds each ``(series, SQL expression)`` count to
    this hour's and this day's figure once per row of the CTE ``source`` (none when it has
    no row), in the shard of that row's ``id``; the buckets are the driver's named
    parameters ``hour`` and ``day``."""
    values = ", ".join(f"('{series}', CAST({expression} AS BIGINT))" for series, expression in counts)
    return (f"counting AS (INSERT INTO {history.name} (series, subject, period, bucket, value)"
            f" SELECT c.series, mod({source}.id, {COUNT_SHARDS}), p.period, p.bucket, c.value FROM {source}"
            f" CROSS JOIN (VALUES {values}) AS c(series, value)"
            f" CROSS JOIN (VALUES ('{HOUR}', CAST(%(hour)s AS TIMESTAMP)), ('{DAY}', CAST(%(day)s AS TIMESTAMP)))"
            " AS p(period, bucket) WHERE c.value <> 0"
            f" ON CONFLICT (series, subject, period, bucket) DO UPDATE SET value = {history.name}.value + excluded.value)")


def count_members(conn: Connection, tables: CDPTables, segment_id: int, change: int) -> None:
    """Keep the segment's member count with the change that made it, in its transaction
    (the writers count what they changed: the back office reads it, never counts), and
    the count's figure for this hour and this day. On PostgreSQL one statement, as the
    count alone was; elsewhere two (SQLite's are calls within the process)."""
    if not change:
        return
    buckets = buckets_now()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_postgres_count(tables.segments.name, tables.history), (change, segment_id, buckets[HOUR],
                                                                                     buckets[DAY]))
        return
    conn.execute(_count_statement(tables.segments), {"segment_id": segment_id, "change": change})
    note_members(conn, tables, segment_id)


@functools.cache
def _postgres_count(segments: str, history: Table) -> str:
    return (f"WITH counted AS (UPDATE {segments} SET member_count = member_count + %s WHERE id = %s"
            f" RETURNING id, member_count), {postgres_noted(history)} SELECT 1")


@functools.cache
def _count_statement(segments: Table) -> Any:
    """Made once per table: building the statement cost as much as running it."""
    return (update(segments).where(segments.c.id == bindparam("segment_id"))
            .values(member_count=segments.c.member_count + bindparam("change")))


def note_members(conn: Connection, tables: CDPTables, segment_id: int | None = None) -> None:
    """Record a segment's member count as it is now in this transaction (every segment's
    with ``segment_id=None``: after a recount) for this hour and this day."""
    parameters: dict[str, object] = dict(buckets_now())
    if segment_id is not None:
        parameters["segment_id"] = segment_id
    if conflict_insert(conn.dialect.name, tables.history) is None:  # another database: the figures go, then come again
        h = tables.history
        chosen = h.c.subject == segment_id if segment_id is not None else h.c.subject.is_not(None)
        buckets = or_(*(and_(h.c.period == period, h.c.bucket == parameters[period]) for period in (HOUR, DAY)))
        conn.execute(delete(h).where(h.c.series == MEMBERS, buckets, chosen))
    conn.execute(_members_statement(tables.history, tables.segments, conn.dialect.name, segment_id is not None),
                 parameters)


def add_counts(conn: Connection, tables: CDPTables, counts: Mapping[str, int]) -> None:
    """Add each count to its series' figure for this hour and this day (counts of 0 are
    left out: nothing is written for them)."""
    now = utcnow()
    rows = [{"series": series, "subject": 0, "period": period, "bucket": bucket_start(period, now), "value": count}
            for series, count in counts.items() if count for period in (HOUR, DAY)]
    if not rows:
        return
    h = tables.history
    upsert = conflict_insert(conn.dialect.name, h)
    if upsert is not None:
        conn.execute(upsert.on_conflict_do_update(index_elements=_KEY, set_={"value": h.c.value + upsert.excluded.value}),
                     rows)
        return
    for row in rows:  # another database: one row at a time, update first
        key = and_(*(h.c[name] == row[name] for name in _KEY))
        if conn.execute(update(h).where(key).values(value=h.c.value + row["value"])).rowcount == 0:
            conn.execute(insert(h).values(**row))


def add_counts_now(engine: Engine, tables: CDPTables, counts: Mapping[str, int]) -> None:
    """:func:`add_counts` in a transaction of its own (what happened is already kept elsewhere)."""
    if any(counts.values()):
        with engine.begin() as conn:
            add_counts(conn, tables, counts)


def forget_segments(conn: Connection, tables: CDPTables, segment_ids: Any) -> None:
    """Drop deleted segments' figures (a row id may be used again, on SQLite)."""
    h = tables.history
    conn.execute(delete(h).where(h.c.series == MEMBERS, h.c.subject.in_(segment_ids)))


def prune(conn: Connection, tables: CDPTables, days: int) -> int:
    """Delete the figures older than ``days``; how many rows."""
    oldest = bucket_start(DAY, utcnow()) - timedelta(days=days)
    return int(conn.execute(delete(tables.history).where(tables.history.c.bucket < oldest)).rowcount)


_KEY = ["series", "subject", "period", "bucket"]


@functools.cache
def _members_statement(history: Table, segments: Table, dialect: str, one: bool) -> Any:
    """``INSERT … SELECT`` the count from the segment's row for the hour and the day (the
    figure the transaction just wrote), replacing the bucket's figure. Made once: building
    it costs as much as running it."""
    s = segments
    chosen = s.c.id == bindparam("segment_id") if one else s.c.id.is_not(None)  # SQLite's upsert needs a WHERE
    rows = union_all(*(select(literal(MEMBERS), s.c.id, literal(period), bindparam(period, type_=history.c.bucket.type),
                              s.c.member_count)
                       .where(chosen) for period in (HOUR, DAY)))
    columns = ["series", "subject", "period", "bucket", "value"]
    upsert = conflict_insert(dialect, history)
    if upsert is None:  # another database: note_members deleted the bucket's figures first
        return insert(history).from_select(columns, rows)
    statement = upsert.from_select(columns, rows)
    return statement.on_conflict_do_update(index_elements=_KEY, set_={"value": statement.excluded.value})


# -- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentRow:
    """A segment as the dashboard lists it: its row id (its figures' subject) and names."""

    id: int
    group: str
    identifier: str
    name: str
    members: int


def segments_page(conn: Connection, tables: CDPTables, offset: int, limit: int) -> list[SegmentRow]:
    """Segments by group and identifier, ``limit`` of them from ``offset``."""
    s, g = tables.segments, tables.segment_groups
    rows = conn.execute(select(s.c.id, g.c.identifier, s.c.identifier, s.c.name, s.c.member_count)
                        .join(g, g.c.id == s.c.group_id).order_by(g.c.identifier, s.c.identifier)
                        .offset(offset).limit(limit))
    return [SegmentRow(int(row[0]), row[1], row[2], row[3], int(row[4] or 0)) for row in rows]


def counted(conn: Connection, tables: CDPTables, series: Sequence[str], name: str,
            now: datetime | None = None) -> dict[str, list[int]]:
    """Each series' figure per bucket of the period ``name`` (0 where nothing happened):
    the sum of its shards."""
    period, _ = PERIODS[name]
    starts = bucket_starts(name, now)
    index = {start: position for position, start in enumerate(starts)}
    figures = {one: [0] * len(starts) for one in series}
    h = tables.history
    rows = conn.execute(select(h.c.series, h.c.bucket, func.sum(h.c.value)).where(
        h.c.series.in_(series), h.c.period == period, h.c.bucket >= starts[0]).group_by(h.c.series, h.c.bucket))
    for one, bucket, value in rows:
        position = index.get(bucket)
        if position is not None:
            figures[one][position] = int(value)
    return figures


def member_counts(conn: Connection, tables: CDPTables, segment_ids: Sequence[int], name: str,
                  now: datetime | None = None) -> dict[int, list[int | None]]:
    """Each segment's member count at the end of each bucket of the period ``name``: the
    figure of the last change up to then (``None`` before its first figure). Two
    statements whatever the number of segments: the period's figures, and the last
    figure before it for each segment (an index probe each)."""
    period, _ = PERIODS[name]
    starts = bucket_starts(name, now)
    index = {start: position for position, start in enumerate(starts)}
    h, s = tables.history, tables.segments
    chosen = (h.c.series == MEMBERS, h.c.subject.in_(segment_ids), h.c.period == period)
    changes: dict[int, list[int | None]] = {segment: [None] * len(starts) for segment in segment_ids}
    for segment, bucket, value in conn.execute(select(h.c.subject, h.c.bucket, h.c.value)
                                               .where(*chosen, h.c.bucket >= starts[0])):
        position = index.get(bucket)
        if position is not None:
            changes[int(segment)][position] = int(value)
    # Each segment's last figure before the period: one probe of the key's index each
    # (newest first, the first row), not a scan of every earlier figure.
    last = (select(h.c.value).where(h.c.series == MEMBERS, h.c.subject == s.c.id, h.c.period == period,
                                    h.c.bucket < starts[0]).order_by(h.c.bucket.desc()).limit(1).scalar_subquery())
    before = {int(segment): int(value) for segment, value in conn.execute(
        select(s.c.id, last).where(s.c.id.in_(segment_ids))) if value is not None}
    for segment, figures in changes.items():
        carried = before.get(segment)
        for position, figure in enumerate(figures):
            carried = figure if figure is not None else carried
            figures[position] = carried
    return changes


# -- keeping it for CDP_HISTORY_DAYS -----------------------------------------------------


@dataclass
class PruneReport:
    deleted: int = 0

    def summary(self) -> str:
        """Nothing when nothing was deleted (most passes)."""
        return f"history: {self.deleted} rows older than CDP_HISTORY_DAYS deleted" if self.deleted else ""


class HistoryPruning:
    """The worker's job: delete figures older than ``days``, once an hour per process (a
    cheap statement on the bucket's index; several workers doing it is harmless)."""

    name = "history"
    EVERY_SECONDS = 3600.0

    def __init__(self, engine: Engine, tables: CDPTables, days: int) -> None:
        self.engine = engine
        self.tables = tables
        self.days = days
        self._last: float | None = None

    def describe(self) -> str:
        return f"history (kept {self.days} days)"

    def run_due(self, worker: Callable[[], str], stop: Callable[[], bool]) -> PruneReport:
        now = time.monotonic()
        if stop() or (self._last is not None and now - self._last < self.EVERY_SECONDS):
            return PruneReport()
        self._last = now
        with self.engine.begin() as conn:
            return PruneReport(prune(conn, self.tables, self.days))

    def close(self) -> None:
        pass
