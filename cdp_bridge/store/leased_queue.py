"""One leased queue over a table: how the delivery inbox, the buy outbox (and, next, the
erasure requests) hand their rows to any number of workers.

A worker *claims* due rows with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so
workers on many hosts share a table; SQLite's one writer serialises them), and counts a
try. It then *holds* its claim inside the transaction that does the work (a worker whose
lease ended and was taken over must not do it again), *releases* a row that failed (due
again after the queue's :class:`Backoff`, or given up after its last try), or *forgets*
a row whose work is done and must not stay (a buy Raptor has). A row whose worker died
is due again when its lease ends, and whoever takes it over says so in one WARNING.

A table holds the columns ``id``, ``attempts``, ``available_at``, ``claimed_by`` and
``lease_expires_at``, and one for the last error. A queue that keeps its rows after they
are done (the delivery log) has a ``status`` column too, and names its waiting, claimed
and given-up values in :class:`Statuses`; a queue without one deletes a given-up row.
"""

from __future__ import annotations

import enum
import logging
import os
import socket
import uuid
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, Engine, Row, Table, and_, delete, or_, select, update

from ..metrics import QUEUE_CLAIMS, QUEUE_GIVEN_UP, QUEUE_RETRIES, QUEUE_TAKEOVERS
from .secure_delete import secure_deleting
from .tables import utcnow


def worker_identity() -> str:
    """A name unique to one claim: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Backoff:
    """The wait before a failed row is due again: ``base_seconds``, doubling each try,
    never more than ``max_seconds``. One policy for every queue; each picks its numbers."""

    base_seconds: int
    max_seconds: int

    def seconds(self, attempts: int) -> int:
        """The wait after try ``attempts`` failed (the first waits ``base_seconds``)."""
        return int(min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class Statuses:
    """A table's ``status`` values for a row waiting its turn, claimed, and given up."""

    waiting: str
    claimed: str
    given_up: str


class Released(enum.StrEnum):
    """What releasing a failed row came to."""

    #: Due again after its backoff.
    RETRY = "retry"
    #: That was its last try (or it can never succeed): kept as given up, or deleted.
    GAVE_UP = "gave_up"
    #: Another worker holds it now: nothing was changed.
    LEASE_LOST = "lease_lost"


@dataclass(frozen=True)
class Release:
    """A release's outcome, the row's tries so far, the seconds until it is due again
    (when retried), and the columns the caller asked to read back."""

    outcome: Released
    attempts: int
    retry_in: int
    row: Row[Any] | None = None


class LeasedQueue:
    """Claims, holds, releases and forgets the rows of one table (see the module)."""

    def __init__(self, name: str, engine: Engine, table: Table, *, lease_seconds: int, max_attempts: int,
                 backoff: Backoff, error_column: str = "error", statuses: Statuses | None = None,
                 log: logging.Logger | None = None, item: str = "row", give_up_after: timedelta | None = None,
                 secure_delete: bool = False) -> None:
        #: The ``queue`` label of the queue metrics.
        self.name = name
        self.engine = engine
        self.table = table
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.backoff = backoff
        #: A row still failing this long after ``queued_at`` is given up, whatever its tries.
        self.give_up_after = give_up_after
        self.statuses = statuses
        #: Rows hold a person's identifier: a deleted one must not stay readable (SPEC section 14).
        self.secure_delete = secure_delete
        self._error = table.c[error_column]
        self._log = log or logging.getLogger("cdp_bridge.queue")
        #: How the log names one row ("delivery 12: taken over by …").
        self._item = item

    # -- claiming -------------------------------------------------------------------------

    def due(self, now: datetime) -> ColumnElement[bool]:
        """Rows a worker may claim at ``now``: waiting and available, or claimed by a worker
        whose lease has ended."""
        t = self.table
        lease_over = t.c.lease_expires_at < now
        if self.statuses is None:
            return and_(t.c.available_at <= now, or_(t.c.lease_expires_at.is_(None), lease_over))
        return or_(and_(t.c.status == self.statuses.waiting, t.c.available_at <= now),
                   and_(t.c.status == self.statuses.claimed, lease_over))

    def claim(self, worker: str, limit: int = 1, columns: Sequence[Column[Any]] = ()) -> list[Row[Any]]:
        """Lease up to ``limit`` due rows, oldest first, and count a try on each: their
        ``id`` and ``attempts`` and ``columns``, in id order (none when nothing is due)."""
        t, now = self.table, utcnow()
        due = self.due(now)
        claimed: dict[str, Any] = {"claimed_by": worker, "lease_expires_at": now + timedelta(seconds=self.lease_seconds),
                                   "attempts": t.c.attempts + 1}
        if self.statuses is not None:
            claimed["status"] = self.statuses.claimed
        if "claimed_at" in t.c:
            claimed["claimed_at"] = now
        with self.engine.begin() as conn:
            candidates = select(t.c.id, t.c.claimed_by, t.c.lease_expires_at).where(due).order_by(t.c.id).limit(limit)
            if conn.dialect.name == "postgresql":
                candidates = candidates.with_for_update(skip_locked=True)
            previous = {row.id: row for row in conn.execute(candidates)}
            if not previous:
                return []
            rows = conn.execute(update(t).where(t.c.id.in_(list(previous)), due).values(**claimed)
                                .returning(t.c.id, t.c.attempts, *columns)).all()
        QUEUE_CLAIMS.labels(self.name).inc(len(rows))
        for row in rows:
            earlier = previous[row.id]
            if earlier.claimed_by is not None:  # a worker died or hung holding it
                QUEUE_TAKEOVERS.labels(self.name).inc()
                self._log.warning("%s %s: taken over by %s from %s, whose lease ended at %s", self._item, row.id,
                                  worker, earlier.claimed_by, earlier.lease_expires_at)
        return sorted(rows, key=lambda row: int(row.id))

    def hold(self, conn: Connection, row_id: int, worker: str) -> Row[Any] | None:
        """The whole row, locked in ``conn``'s transaction, if ``worker`` still holds it
        (else ``None``: it was taken over and must not be worked on here)."""
        t = self.table
        held = and_(t.c.id == row_id, t.c.claimed_by == worker)
        if self.statuses is not None:
            held = and_(held, t.c.status == self.statuses.claimed)
        row = conn.execute(select(t).where(held).with_for_update()).first()
        if row is not None and conn.dialect.name != "postgresql":
            # SQLite has no FOR UPDATE: a write takes its database lock instead.
            conn.execute(update(t).where(t.c.id == row_id).values(claimed_by=worker))
        return row

    # -- after a try ----------------------------------------------------------------------

    def release(self, row_id: int, worker: str, error: str, *, give_up: bool = False,
                columns: Sequence[Column[Any]] = ()) -> Release:
        """A try failed with ``error``: the row is due again after its backoff, or given
        up after its last try or ``give_up_after`` (or at once with ``give_up``, for a row
        that can never succeed). Nothing changes when ``worker`` no longer holds it."""
        t = self.table
        with self._writing() as conn:
            aged = [t.c.queued_at] if self.give_up_after is not None else []
            row = conn.execute(select(t.c.attempts, t.c.claimed_by, *aged, *columns).where(t.c.id == row_id)).first()
            if row is None or row.claimed_by != worker:
                return Release(Released.LEASE_LOST, row.attempts if row is not None else 0, 0, row)
            attempts = int(row.attempts)
            too_old = self.give_up_after is not None and utcnow() - row.queued_at >= self.give_up_after
            if give_up or too_old or attempts >= self.max_attempts:
                self._give_up(conn, row_id, error)
                QUEUE_GIVEN_UP.labels(self.name).inc()
                return Release(Released.GAVE_UP, attempts, 0, row)
            retry_in = self.backoff.seconds(attempts)
            waiting: dict[str, Any] = {} if self.statuses is None else {"status": self.statuses.waiting}
            conn.execute(update(t).where(t.c.id == row_id).values(
                claimed_by=None, lease_expires_at=None, available_at=utcnow() + timedelta(seconds=retry_in),
                **{self._error.name: self._fitted(error)}, **waiting))
        QUEUE_RETRIES.labels(self.name).inc()
        return Release(Released.RETRY, attempts, retry_in, row)

    def _give_up(self, conn: Connection, row_id: int, error: str) -> None:
        t = self.table
        if self.statuses is None:
            conn.execute(delete(t).where(t.c.id == row_id))
            return
        given_up: dict[str, Any] = {"status": self.statuses.given_up, "claimed_by": None, "lease_expires_at": None,
                                    self._error.name: self._fitted(error)}
        if "finished_at" in t.c:
            given_up["finished_at"] = utcnow()
        conn.execute(update(t).where(t.c.id == row_id).values(**given_up))

    def _fitted(self, error: str) -> str:
        """The error, cut to its column's length when the column has one."""
        length = getattr(self._error.type, "length", None)
        return error[:length] if length else error

    def forget(self, row_id: int) -> None:
        """Delete a row whose work is done (or that was given up by its owner)."""
        with self._writing() as conn:
            conn.execute(delete(self.table).where(self.table.c.id == row_id))

    def _writing(self) -> AbstractContextManager[Connection]:
        """A transaction; one that overwrites what it deletes for a queue of identifiers."""
        return secure_deleting(self.engine) if self.secure_delete else self.engine.begin()
