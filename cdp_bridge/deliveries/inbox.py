"""The delivery inbox: every webhook delivery is recorded here before it is answered.

A small delivery is recorded and applied in one transaction; a large one is recorded as
``queued`` and applied later by a worker. Workers claim deliveries with a lease
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL), re-assert the claim inside the transaction
that applies the delivery, and so a delivery is applied exactly once even when a
worker dies and another takes its delivery over after the lease expires. Failures are
retried with backoff; after the last try the delivery is ``failed``, kept, replayable.

Statuses are :class:`~cdp_bridge.model.DeliveryStatus`; what receiving or processing
came to is an :class:`~cdp_bridge.model.Outcome`.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, Table, bindparam, exists, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from .. import signals
from ..errors import CDPError, NotFoundError, first_line
from ..jobs.wake import notify_workers
from ..log_text import counted
from ..metrics import DELIVERIES_APPLIED, DELIVERIES_FAILED, DELIVERY_APPLY_SECONDS
from ..model import (
    REPLAYABLE,
    ActivationCredentials,
    ActivationDocument,
    AudienceChange,
    DeliveryStatus,
    Outcome,
    Rejections,
)
from ..privacy.erasure import ErasureRequests
from ..store import CDPTables, history, utcnow
from ..store.audiences import apply_audience_changes, changes_from_json, changes_to_json
from ..store.bulk import driver_row
from ..store.changes import recording
from ..store.leased_queue import Backoff, LeasedQueue, Released, Statuses
from ..store.membership import group_lock_key
from ..store.upserts import insert_skipping_conflicts

log = logging.getLogger("cdp_bridge.webhook")

MAX_ATTEMPTS = 5
#: A failed delivery is due again after 5 s, 10 s, 20 s … at most 15 minutes.
BACKOFF = Backoff(base_seconds=5, max_seconds=900)
#: Where a delivery stands in the queue.
STATUSES = Statuses(waiting=DeliveryStatus.QUEUED, claimed=DeliveryStatus.PROCESSING, given_up=DeliveryStatus.FAILED)


@dataclass(frozen=True)
class IncomingDelivery:
    """A parsed, authenticated delivery on its way into the inbox."""

    activation: ActivationCredentials
    document: ActivationDocument
    request_id: str | None
    payload_format: str


@dataclass(frozen=True)
class ReceiveResult:
    """What the webhook answers: one of applied, queued, duplicate, unknown_segment_group."""

    status: Outcome
    #: None when nothing was recorded (a segment group mismatch).
    delivery_id: int | None
    items: int = 0
    applied: int = 0
    stale: int = 0
    rejected: Rejections = field(default_factory=Rejections)


@dataclass(frozen=True)
class Processed:
    """What one pass of the queue workers over the inbox did."""

    count: int

    def summary(self) -> str:
        """The line ``flask cdp worker --once`` prints."""
        return f"Processed {counted(self.count, 'delivery', 'deliveries')}."


@dataclass(frozen=True)
class DeliverySummary:
    """One row of the delivery log as lists show it: no payload, no rejection sample."""

    id: int
    received_at: datetime
    client_id: str
    segment_group_identifier: str
    request_id: str | None
    payload_format: str
    items: int
    status: DeliveryStatus
    attempts: int
    applied: int | None
    stale: int | None
    rejected_count: int
    claimed_by: str | None = None
    lease_expires_at: datetime | None = None
    error: str | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None


@dataclass(frozen=True)
class QueueHealth:
    """The queue as ``flask cdp check`` reports it (times are UTC, naive like the table's)."""

    queued: int
    oldest_queued_at: datetime | None
    processing: int
    failed: int
    #: The newest claim by any worker, of any delivery: None if no worker ever claimed one.
    last_claim_at: datetime | None


@dataclass(frozen=True)
class Delivery(DeliverySummary):
    """One delivery with what it refused: a sample and a count per reason."""

    rejected: Rejections = field(default_factory=Rejections)


class _AlreadyRecorded(Exception):
    """A delivery with this request id was recorded first: roll this one back."""


class LeaseLost(CDPError):
    """Another worker took the delivery over; this one must not apply it."""


class DeliveryInbox:
    """Records, applies, queues, claims and replays deliveries of one database."""

    def __init__(
        self,
        engine: Engine,
        tables: CDPTables,
        *,
        bulk_async_threshold: int,
        lease_seconds: int,
        max_attempts: int = MAX_ATTEMPTS,
        holds: ErasureRequests | None = None,
    ) -> None:
        self.engine = engine
        self.tables = tables
        self.bulk_async_threshold = bulk_async_threshold
        #: The erasure requests whose hold keeps forgotten people out (None: no SECRET_KEY, none can exist).
        self.holds = holds
        self.queue = LeasedQueue("deliveries", engine, tables.deliveries, lease_seconds=lease_seconds,
                                 max_attempts=max_attempts, backoff=BACKOFF, statuses=STATUSES, log=log,
                                 item="delivery")

    @property
    def lease_seconds(self) -> int:
        return self.queue.lease_seconds

    @property
    def max_attempts(self) -> int:
        return self.queue.max_attempts

    # -- receiving -----------------------------------------------------------------------

    def receive(self, incoming: IncomingDelivery, *, queue: bool | None = None) -> ReceiveResult:
        """Record a delivery and apply it now, or leave it queued for a worker: queued when
        it holds ``bulk_async_threshold`` ids or more, unless ``queue`` says otherwise.

        A body that names another segment group than its activation's is refused before
        anything is recorded (:attr:`Outcome.SEGMENT_GROUP_MISMATCH`).
        """
        named = incoming.document.segment_group_identifier
        if named is not None and named != incoming.activation.segment_group_identifier:
            return ReceiveResult(Outcome.SEGMENT_GROUP_MISMATCH, None)
        if queue is None:
            queue = incoming.document.items >= self.bulk_async_threshold
        try:
            with recording() as changes, self.engine.begin() as conn:
                result = self._receive(conn, incoming, queue)
        except (IntegrityError, _AlreadyRecorded):
            # Another request with the same request id committed first: what this one
            # applied is rolled back with its transaction.
            duplicate = self._duplicate_of(incoming.activation.client_id, incoming.request_id)
            if duplicate is None:
                raise
            return ReceiveResult(Outcome.DUPLICATE, duplicate)
        if result.status == Outcome.APPLIED:  # counted once committed
            DELIVERIES_APPLIED.labels(incoming.activation.client_id).inc()
            if changes is not None:
                changes.send("webhook")
        return result

    def _receive(self, conn: Connection, incoming: IncomingDelivery, queue: bool) -> ReceiveResult:
        """One transaction, as few round trips as can be: a small delivery is applied, then
        recorded as applied; a repeated request id is found by the record's unique key
        (the insert's conflict), which rolls back what was applied."""
        activation, document, request_id = incoming.activation, incoming.document, incoming.request_id
        started = time.monotonic()
        now = utcnow()
        row = {
            "client_id": activation.client_id,
            "segment_group_identifier": activation.segment_group_identifier,
            "payload_format": incoming.payload_format,
            # What a worker or a replay applies later; a delivery applied now keeps none.
            "payload": "[]",
            "items": document.items,
            "rejected": document.rejected.as_record(),
            "rejected_count": document.rejected.total,
            "received_at": now,
            "available_at": now,
            "attempts": 0,
            "request_id": request_id,
        }
        group_id, holding = self._group_id(conn, activation.segment_group_identifier)
        if group_id is None:
            error = f"unknown_segment_group: segment group {activation.segment_group_identifier!r} does not exist"
            delivery_id = self._record(conn, {**row, "payload": changes_to_json(document.changes),
                                              "status": DeliveryStatus.REJECTED, "error": error, "request_id": None})
            history.add_counts(conn, self.tables, {history.REJECTED_IDS: document.items})
            return ReceiveResult(Outcome.UNKNOWN_SEGMENT_GROUP, delivery_id, document.items)
        if queue:
            delivery_id = self._record(conn, {**row, "payload": changes_to_json(document.changes),
                                              "status": DeliveryStatus.QUEUED})
            notify_workers(conn)
            return ReceiveResult(Outcome.QUEUED, delivery_id, document.items)
        changes = self._without_held(conn, document.changes, document.rejected, holding)
        with DELIVERY_APPLY_SECONDS.time():
            outcome = apply_audience_changes(conn, self.tables, group_id, changes)
        row.update(rejected=document.rejected.as_record(), rejected_count=document.rejected.total)
        delivery_id = self._record(conn, {**row, "status": DeliveryStatus.APPLIED, "attempts": 1, "applied": outcome.applied,
                                          "stale": outcome.stale, "finished_at": utcnow(),
                                          "duration_ms": int((time.monotonic() - started) * 1000)}, counted=True)
        return ReceiveResult(Outcome.APPLIED, delivery_id, document.items, outcome.applied, outcome.stale, document.rejected)

    def _record(self, conn: Connection, row: dict[str, Any], *, counted: bool = False) -> int:
        """Insert the delivery's row; :class:`_AlreadyRecorded` when its request id is taken.
        ``counted``: an applied delivery, counted in the dashboard's history (on PostgreSQL
        in the same statement: a small delivery stays four round trips)."""
        d = self.tables.deliveries
        if counted and conn.dialect.name == "postgresql":
            buckets = history.buckets_now()
            sql = _counted_record_sql(d, self.tables.history, tuple(sorted(row)))
            recorded = driver_row(conn, sql, {**row, "rejected": json.dumps(row["rejected"]),
                                              "hour": buckets[history.HOUR], "day": buckets[history.DAY]})
            found = recorded[0] if recorded is not None else None
        else:
            found = conn.execute(_record_statement(d, conn.dialect.name), row).scalar()
            if counted and found is not None:
                history.add_counts(conn, self.tables, {history.DELIVERIES_APPLIED: 1,
                                                       history.REJECTED_IDS: int(row["rejected_count"])})
        if found is None:
            raise _AlreadyRecorded
        return int(found)

    def _find_request(self, conn: Connection, client_id: str, request_id: str) -> int | None:
        d = self.tables.deliveries
        found = conn.scalar(select(d.c.id).where(d.c.client_id == client_id, d.c.request_id == request_id))
        return int(found) if found is not None else None

    def _duplicate_of(self, client_id: str, request_id: str | None) -> int | None:
        if request_id is None:
            return None
        with self.engine.connect() as conn:
            return self._find_request(conn, client_id, request_id)

    def _group_id(self, conn: Connection, identifier: str) -> tuple[int | None, bool]:
        """The group's id, and in the same statement whether anyone is held out of
        deliveries now (for :meth:`_without_held`: a delivery stays five statements); on
        PostgreSQL the same statement takes the group's reconcile lock shared, so a
        delivery waits for a reconcile of its group and is applied after it (see
        :mod:`..reconcile.runner`; on SQLite the one writer at a time does this)."""
        postgres = conn.dialect.name == "postgresql"
        parameters = {"identifier": identifier, "now": utcnow()}
        if postgres:
            parameters["lock_key"] = group_lock_key(identifier)
        query = _group_id_query(self.tables.segment_groups, self.tables.erasure_requests, postgres)
        # On PostgreSQL the transaction's first statement, on the driver's cursor: see driver_row.
        found = driver_row(conn, query, parameters) if postgres else conn.execute(query, parameters).first()
        return (int(found[0]), bool(found[1])) if found is not None else (None, False)

    def _finish(self, conn: Connection, delivery_id: int, applied: int, stale: int, started: float,
                rejected: Rejections | None) -> None:
        """Record a queued delivery as applied; its payload is dropped (as a delivery applied
        at once keeps none: an applied delivery is never replayed, and the ids it held
        should not outlive their use), with what the hold window refused, if anything."""
        d = self.tables.deliveries
        more = {} if rejected is None else {"rejected": rejected.as_record(), "rejected_count": rejected.total}
        conn.execute(
            update(d)
            .where(d.c.id == delivery_id)
            .values(
                status=DeliveryStatus.APPLIED,
                payload="[]",
                applied=applied,
                stale=stale,
                error=None,
                claimed_by=None,
                lease_expires_at=None,
                finished_at=utcnow(),
                duration_ms=int((time.monotonic() - started) * 1000),
                **more,
            )
        )

    def _without_held(self, conn: Connection, changes: Sequence[AudienceChange], rejected: Rejections,
                      holding: bool) -> Sequence[AudienceChange]:
        """The changes without a person forgotten within the hold window (see
        :mod:`..privacy.erasure`); each one counted in ``rejected``."""
        if self.holds is None or not holding:
            return changes
        return self.holds.without_held(conn, changes, rejected)

    # -- working the queue -------------------------------------------------------------

    def claim(self, worker: str) -> int | None:
        """Claim the oldest due delivery (queued, or processing with an expired lease)."""
        claimed = self.queue.claim(worker)
        return int(claimed[0].id) if claimed else None

    def process(self, delivery_id: int, worker: str) -> Outcome:
        """Apply a claimed delivery; returns its new status (or ``lease_lost``)."""
        started = time.monotonic()
        try:
            with recording() as recorded, self.engine.begin() as conn:
                row = self.queue.hold(conn, delivery_id, worker)
                if row is None:
                    raise LeaseLost(f"delivery {delivery_id} is no longer claimed by {worker}")
                if row.attempts > self.max_attempts:
                    raise CDPError(f"gave up after {self.max_attempts} tries (workers stopped mid-delivery)")
                group_id, holding = self._group_id(conn, row.segment_group_identifier)
                if group_id is None:
                    raise NotFoundError(f"segment group {row.segment_group_identifier!r} does not exist")
                rejected = Rejections.from_record(_json_column(row.rejected))
                before = rejected.total
                changes = self._without_held(conn, changes_from_json(row.payload), rejected, holding)
                with DELIVERY_APPLY_SECONDS.time():
                    outcome = apply_audience_changes(conn, self.tables, group_id, changes)
                self._finish(conn, delivery_id, outcome.applied, outcome.stale, started,
                             rejected if rejected.total != before else None)
                history.add_counts(conn, self.tables, {history.DELIVERIES_APPLIED: 1, history.REJECTED_IDS: rejected.total})
        except LeaseLost:
            log.warning("delivery %s: lease lost to another worker; not applied here", delivery_id)
            return Outcome.LEASE_LOST
        except (SQLAlchemyError, CDPError, ValueError) as exc:
            return self._record_failure(delivery_id, worker, exc)
        DELIVERIES_APPLIED.labels(row.client_id).inc()
        if recorded is not None:
            recorded.send("webhook")
        log_outcome(
            delivery_id=delivery_id,
            status=Outcome.APPLIED,
            client_id=row.client_id,
            group=row.segment_group_identifier,
            items=row.items,
            applied=outcome.applied,
            stale=outcome.stale,
            rejected=rejected.total,  # with those the hold window kept out
            duration_ms=(time.monotonic() - started) * 1000,
        )
        return Outcome.APPLIED

    def _record_failure(self, delivery_id: int, worker: str, exc: BaseException) -> Outcome:
        message = f"{type(exc).__name__}: {first_line(exc)}"
        released = self.queue.release(delivery_id, worker, message, columns=[self.tables.deliveries.c.client_id])
        if released.outcome == Released.LEASE_LOST:
            return Outcome.LEASE_LOST
        outcome = Outcome.FAILED if released.outcome == Released.GAVE_UP else Outcome.QUEUED
        if outcome == Outcome.FAILED and released.row is not None:
            DELIVERIES_FAILED.labels(released.row.client_id).inc()
            history.add_counts_now(self.engine, self.tables, {history.DELIVERIES_FAILED: 1})
        log.warning("delivery %s: try %s failed (%s); now %s", delivery_id, released.attempts, message, outcome)
        if outcome == Outcome.FAILED:
            signals.send(signals.delivery_failed, delivery_id=delivery_id, reason=message)
        return outcome

    #: The queue worker's name for this job.
    name = "deliveries"

    def run_due(self, worker: Callable[[], str], stop: Callable[[], bool]) -> Processed:
        """Apply every delivery that is due now, each under a claim of its own (until
        ``stop`` says so); how many were processed. The worker's job (see
        :mod:`..jobs.worker`)."""
        processed = 0
        while not stop():
            claim = worker()
            delivery_id = self.claim(claim)
            if delivery_id is None:
                break
            self.process(delivery_id, claim)
            processed += 1
        return Processed(processed)

    def close(self) -> None:
        """Nothing to let go of: the engine is the app's."""

    # -- the log ---------------------------------------------------------------------------

    def queue_health(self) -> QueueHealth:
        """What an operator watches: the queue's depth and age, failures, worker activity."""
        d = self.tables.deliveries
        counts = select(d.c.status, func.count(), func.min(d.c.received_at)).where(
            d.c.status.in_([DeliveryStatus.QUEUED, DeliveryStatus.PROCESSING, DeliveryStatus.FAILED])
        ).group_by(d.c.status)
        with self.engine.connect() as conn:
            by_status = {DeliveryStatus(row[0]): (int(row[1]), row[2]) for row in conn.execute(counts)}
            last_claim = conn.scalar(select(func.max(d.c.claimed_at)))
        queued, oldest = by_status.get(DeliveryStatus.QUEUED, (0, None))
        return QueueHealth(
            queued=queued,
            oldest_queued_at=oldest,
            processing=by_status.get(DeliveryStatus.PROCESSING, (0, None))[0],
            failed=by_status.get(DeliveryStatus.FAILED, (0, None))[0],
            last_claim_at=last_claim,
        )

    def get(self, delivery_id: int) -> Delivery:
        """One delivery, or :class:`NotFoundError`."""
        d = self.tables.deliveries
        with self.engine.connect() as conn:
            row = conn.execute(select(d).where(d.c.id == delivery_id)).first()
        if row is None:
            raise NotFoundError(f"delivery {delivery_id} does not exist")
        return Delivery(**_summary_fields(row), rejected=Rejections.from_record(_json_column(row.rejected)))

    def summaries(
        self, status: DeliveryStatus | None = None, *, offset: int = 0, limit: int | None = 100
    ) -> list[DeliverySummary]:
        """Deliveries, newest first, optionally of one status; payloads and rejection
        samples are not read, so a page of the log costs the same whatever was sent."""
        d = self.tables.deliveries
        columns = [d.c[name] for name in SUMMARY_COLUMNS]
        query = select(*columns).order_by(d.c.id.desc()).offset(offset).limit(limit)
        if status is not None:
            query = query.where(d.c.status == status)
        with self.engine.connect() as conn:
            return [DeliverySummary(**_summary_fields(row)) for row in conn.execute(query)]

    def replay(self, delivery_id: int) -> Delivery:
        """Queue a failed (or rejected) delivery again, with a fresh set of tries."""
        d = self.tables.deliveries
        with self.engine.begin() as conn:
            status = conn.scalar(select(d.c.status).where(d.c.id == delivery_id))
            if status is None:
                raise NotFoundError(f"delivery {delivery_id} does not exist")
            if status not in REPLAYABLE:
                raise CDPError(f"delivery {delivery_id} is {status}; only failed or rejected deliveries can be replayed")
            conn.execute(
                update(d)
                .where(d.c.id == delivery_id)
                .values(status=DeliveryStatus.QUEUED, attempts=0, available_at=utcnow(), error=None, finished_at=None)
            )
        return self.get(delivery_id)


def log_outcome(
    *,
    delivery_id: int,
    status: str,
    client_id: str,
    group: str,
    items: int,
    applied: int,
    stale: int,
    rejected: int,
    duration_ms: float,
) -> None:
    """The one INFO line per delivery outcome, from the webhook and from the workers."""
    log.info(
        "delivery %s %s: activation=%s group=%s items=%s applied=%s stale=%s rejected=%s duration_ms=%.1f",
        delivery_id, status, client_id, group, items, applied, stale, rejected, duration_ms,
    )


def _json_column(value: object) -> Any:
    """A JSON column's value (some drivers hand JSON back as text)."""
    return json.loads(value) if isinstance(value, str) else value


#: The delivery log's columns that :class:`DeliverySummary` holds.
SUMMARY_COLUMNS = tuple(f.name for f in fields(DeliverySummary))


def _summary_fields(row: object) -> dict[str, Any]:
    found = {name: getattr(row, name) for name in SUMMARY_COLUMNS}
    found["status"] = DeliveryStatus(found["status"])
    return found


# Statements of a delivery's hot path, made once per table (and dialect): building one
# cost as much as running it. Values come as parameters.


@functools.cache
def _group_id_query(groups: Table, erasures: Table, reconcile_lock: bool) -> Select[Any]:
    holding = exists().where(erasures.c.hold_until > bindparam("now")).label("holding")
    columns = [groups.c.id, holding]
    if reconcile_lock:
        columns.append(func.pg_advisory_xact_lock_shared(bindparam("lock_key")).label("reconcile_lock"))
    return select(*columns).where(groups.c.identifier == bindparam("identifier"))


@functools.cache
def _record_statement(deliveries: Table, dialect: str) -> Any:
    return insert_skipping_conflicts(dialect, deliveries, ["client_id", "request_id"]).returning(deliveries.c.id)


@functools.cache
def _counted_record_sql(deliveries: Table, history_table: Table, columns: tuple[str, ...]) -> str:
    """PostgreSQL: the applied delivery's row, and its counts in the dashboard's history
    (:func:`..store.history.postgres_counting`), in one statement, in the driver's named
    parameters (``rejected`` as JSON text)."""
    counting = history.postgres_counting(history_table, "recorded", [(history.DELIVERIES_APPLIED, "1"),
                                                                     (history.REJECTED_IDS, "%(rejected_count)s")])
    values = ", ".join(f"%({column})s::json" if column == "rejected" else f"%({column})s" for column in columns)
    return (f"WITH recorded AS (INSERT INTO {deliveries.name} ({', '.join(columns)}) VALUES ({values})"
            " ON CONFLICT (client_id, request_id) DO NOTHING RETURNING id),"
            f" {counting} SELECT id FROM recorded")
