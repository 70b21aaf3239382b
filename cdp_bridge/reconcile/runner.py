"""``flask cdp reconcile``: make each segment of a group what the CDP API says it is.

For each audience the CDP lists that is a segment of the group, in one transaction: take
the group's reconcile lock (deliveries for the group wait for it, so one that arrives
during the reconcile is applied after it and is not overwritten by an older list), read
the audience's members as a stream into the store, apply the difference as one replace
(:mod:`..store.streamed_replace`), record the sequence number and what changed
(``cdp_reconciles``), commit, then send ``memberships_changed`` with
``source="reconcile"``. ``dry_run`` does the same and rolls back: its counts are exact,
and nothing changes.

A bad answer for one audience (refused, not found, unreadable, cut short, over
``CDP_RECONCILE_MAX_BYTES``), or an audience with no segment in the group, changes nothing
for that segment, is reported by name, and the run goes on with the next.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from ..constants import MAX_IDENTIFIER_LENGTH
from ..errors import CDPError
from ..identifiers import are_plain_user_ids
from ..json_text import UnreadableJSON, read_json
from ..metrics import RECONCILE_CHANGES, RECONCILE_RUNS
from ..outbound import AnswerTooLarge, StreamedAnswer
from ..store import history, membership
from ..store.changes import recording
from ..store.streamed_replace import StreamedReplace
from ..store.tables import CDPTables, utcnow
from .answers import MembershipList, MembershipListReader, StreamedMembers, UnreadableAnswer, members_from
from .client import CdpApiClient, ReconcileFailure

log = logging.getLogger("cdp_bridge.reconcile")


@dataclass
class SegmentReport:
    """What a reconcile did (or, dry, would do) to one segment."""

    segment: str
    added: int = 0
    removed: int = 0
    unchanged: int = 0
    sequence: int | None = None
    skipped_ids: int = 0
    error: str | None = None

    def line(self, dry_run: bool) -> str:
        if self.error is not None:
            return f"{self.segment}: FAILED, nothing changed: {self.error}"
        verb = "would add" if dry_run else "added"
        text = (f"{self.segment}: {verb} {self.added}, {'would remove' if dry_run else 'removed'} {self.removed},"
                f" unchanged {self.unchanged}, sequence {self.sequence if self.sequence is not None else '-'}")
        if self.skipped_ids:
            text += f"; {self.skipped_ids} ids skipped (not valid user ids)"
        return text


@dataclass
class RunReport:
    group: str
    dry_run: bool
    segments: list[SegmentReport] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or any(report.error is not None for report in self.segments)


class Reconciler:
    """Reconciles groups from one CDP API activation."""

    def __init__(self, engine: Engine, tables: CDPTables, client: CdpApiClient,
                 readers: Sequence[MembershipListReader] = ()) -> None:
        self.engine = engine
        self.tables = tables
        self.client = client
        self.readers = readers

    def run(self, group: str, *, dry_run: bool = False) -> RunReport:
        report = RunReport(group, dry_run)
        g, s = self.tables.segment_groups, self.tables.segments
        with self.engine.connect() as conn:
            group_id = conn.scalar(select(g.c.id).where(g.c.identifier == group))
            segments = set(conn.scalars(select(s.c.identifier).where(s.c.group_id == group_id))) if group_id else set()
        if group_id is None:
            report.error = f"segment group {group!r} does not exist"
        else:
            try:
                audiences = self.client.audiences()
            except ReconcileFailure as exc:
                report.error = str(exc)
                audiences = []
            for audience in audiences:
                if audience.id not in segments:
                    found = SegmentReport(audience.id, error=f"the CDP's audience {audience.id!r}"
                                          f"{f' ({audience.name})' if audience.name else ''} has no segment in group"
                                          f" {group!r}")
                else:
                    found = self._segment(group, int(group_id), audience.id, dry_run)
                report.segments.append(found)
                self._report(group, found, dry_run)
        RECONCILE_RUNS.labels("failed" if report.failed else "ok").inc()
        if not dry_run:
            changed = sum(found.added + found.removed for found in report.segments)
            history.add_counts_now(self.engine, self.tables, {
                history.RECONCILES_FAILED if report.failed else history.RECONCILES_OK: 1, history.RECONCILE_CHANGES: changed})
        if report.error is not None:
            log.warning("reconcile of group %s failed: %s", group, report.error)
        return report

    def _segment(self, group: str, group_id: int, identifier: str, dry_run: bool) -> SegmentReport:
        found = SegmentReport(identifier)
        with recording() as changes:
            try:
                with self._transaction(dry_run) as conn:
                    lock_group(conn, self.tables, group, group_id)
                    self._apply(conn, group_id, found)
                    if not dry_run:
                        self._record(conn, group, found)
            except (ReconcileFailure, UnreadableAnswer, AnswerTooLarge, OSError, CDPError, SQLAlchemyError) as exc:
                found = SegmentReport(identifier, error=_problem(exc))
                if not dry_run:
                    with self.engine.begin() as conn:
                        self._record(conn, group, found)
                return found
            if changes is not None and not dry_run:
                changes.send("reconcile")
        return found

    @contextmanager
    def _transaction(self, dry_run: bool) -> Iterator[Connection]:
        if not dry_run:
            with self.engine.begin() as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            conn.begin()
            try:
                yield conn
            finally:
                conn.rollback()  # a dry run: every count is exact, and nothing stays

    def _apply(self, conn: Connection, group_id: int, found: SegmentReport) -> None:
        row = membership.find_segment(conn, self.tables, group_id, found.segment, lock=True)
        if row is None:
            raise ReconcileFailure("the segment was deleted while the reconcile ran")
        with self.client.members(found.segment) as answer:
            replace = StreamedReplace(conn, self.tables, row.id)
            chunks, sequence = self._members(answer)
            for chunk in chunks:
                usable = _usable(chunk)
                found.skipped_ids += len(chunk) - len(usable)
                replace.feed(usable)
            counts = replace.finish()
        found.added, found.removed, found.unchanged = counts.added, counts.removed, counts.unchanged
        found.sequence = sequence()
        if found.sequence is not None:
            if row.last_sequence is not None and found.sequence < row.last_sequence:
                raise ReconcileFailure(f"the answer's sequence {found.sequence} is older than the store's"
                                       f" {row.last_sequence}: the store has newer deliveries")
            membership.record_sequence(conn, self.tables, row.id, found.sequence)
            membership.bump_store_version(conn, self.tables)

    def _members(self, answer: StreamedAnswer) -> tuple[Iterator[list[str]], Callable[[], int | None]]:
        """The members in chunks, and (once they are read) the sequence number: the
        host's readers first, given the whole answer, else the tolerant streaming one."""
        if self.readers:
            body = answer.whole()
            document = read_json(body)
            if isinstance(document, UnreadableJSON):
                raise UnreadableAnswer(f"the answer is not JSON ({document.detail})")
            for reader in self.readers:
                listed = reader(document)
                if listed is not None:
                    if not isinstance(listed, MembershipList):
                        raise CDPError(f"the membership list reader returned {type(listed).__name__},"
                                       " not a MembershipList")
                    return members_from(listed), functools.partial(getattr, listed, "sequence")
            streamed = StreamedMembers(io.BytesIO(body))
        else:
            streamed = StreamedMembers(answer)
        return streamed.chunks(), lambda: streamed.sequence

    def _record(self, conn: Connection, group: str, found: SegmentReport) -> None:
        conn.execute(insert(self.tables.reconciles).values(
            ran_at=utcnow(), group_identifier=group, segment_identifier=found.segment, added=found.added,
            removed=found.removed, unchanged=found.unchanged, sequence=found.sequence,
            error=found.error[:255] if found.error else None))

    def _report(self, group: str, found: SegmentReport, dry_run: bool) -> None:
        prefix = "reconcile (dry run)" if dry_run else "reconcile"
        if found.error is not None:
            log.warning("%s of group %s: %s", prefix, group, found.line(dry_run))
            return
        log.info("%s of group %s: %s", prefix, group, found.line(dry_run))
        if not dry_run:
            for change, count in (("added", found.added), ("removed", found.removed), ("unchanged", found.unchanged)):
                RECONCILE_CHANGES.labels(change).inc(count)

    def last_reconciles(self, group: str) -> dict[str, LastReconcile]:
        return last_reconciles(self.engine, self.tables, group)


@dataclass(frozen=True)
class LastReconcile:
    ran_at: datetime
    added: int
    removed: int
    unchanged: int
    sequence: int | None
    error: str | None


def last_reconciles(engine: Engine, tables: CDPTables, group: str) -> dict[str, LastReconcile]:
    """Each segment's last reconcile in a group (the back office's group page: one query)."""
    r = tables.reconciles
    newest = select(func.max(r.c.id)).where(r.c.group_identifier == group).group_by(r.c.segment_identifier)
    with engine.connect() as conn:
        rows = conn.execute(select(r).where(r.c.id.in_(newest.scalar_subquery()))).all()
    return {row.segment_identifier: LastReconcile(row.ran_at, row.added, row.removed, row.unchanged, row.sequence,
                                                  row.error) for row in rows}


def lock_group(conn: Connection, tables: CDPTables, group: str, group_id: int) -> None:
    """The group's reconcile lock, exclusive until the transaction ends; a delivery takes
    it shared in its group look-up (:func:`..store.membership.group_lock_key`). On SQLite,
    where one writer holds the database at a time, a write to the group's row takes it."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(membership.group_lock_key(group))))
    else:
        g = tables.segment_groups
        conn.execute(update(g).where(g.c.id == group_id).values(id=g.c.id))


def _usable(chunk: list[str]) -> list[str]:
    if chunk and are_plain_user_ids(chunk):
        return chunk
    return [user_id for user_id in chunk if 0 < len(user_id) <= MAX_IDENTIFIER_LENGTH and user_id.isprintable()]


def _problem(exc: BaseException) -> str:
    if isinstance(exc, SQLAlchemyError):
        return f"the database refused the change ({type(exc).__name__})"
    return str(exc).splitlines()[0][:240] if str(exc) else type(exc).__name__
