"""The buy outbox (``CDP_TRACKING_BUY_OUTBOX``): server-sent buys kept in the database
until Raptor has them.

The sender's queue lives in the web process's memory: its buys lane is never emptied
for other events, but a process killed with events queued (SIGKILL, the OOM killer, a
host that dies) loses them. With the outbox on, a buy is written to ``cdp_buy_outbox``
before the page that tracks it is answered, and the queue workers send it: each claims
a few rows of the store's leased queue (:mod:`..store.leased_queue`, as deliveries are
claimed, so any number of workers share the table), sends them and deletes what Raptor
accepted. A buy whose worker died is taken over when its lease ends; one Raptor did not
accept is tried again after the queue's backoff (30 s, doubling, at most 15 minutes), up
to ``max_attempts`` times; one
Raptor refused (a 4xx other than 429) is dropped at once, with one ERROR. So a buy is
sent at least once, never lost to a killed process, and at most ``max_attempts`` times:
each outbox try is one HTTP request (the outbox is the retry; a slow Raptor that answers
after the timeout may still have taken each of them).

The row is written in a short transaction of its own, not the host's: the page that
tracks a buy is usually an order confirmation that commits nothing, and a buy must not
be lost with a transaction the host leaves open. The row keeps the URL after the
tracking host's (:func:`.wire.event_path`), so a buy goes to the host configured when
it is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, Table, func, insert, select

from ..jobs.wake import notify_workers
from ..metrics import TRACKING_EVENTS
from ..outbound import OutboundClient
from ..retries import retry_policy
from ..store.leased_queue import Backoff, LeasedQueue, Released
from ..store.tables import utcnow
from .sender import MAX_ANSWER_BYTES, send_url
from .wire import Event

log = logging.getLogger("cdp_bridge.tracking")

#: Rows a worker claims at a time, at most: few enough that sending them ends within the
#: lease (see :attr:`BuyOutbox.claim_size`).
CLAIM_SIZE = 20
#: The longest one buy's sending can take: one request of at most 1 s, with room to spare.
SECONDS_PER_BUY = 2
#: A buy Raptor did not accept is tried again after 30 s, 1 min, 2 min … at most 15 min.
BACKOFF = Backoff(base_seconds=30, max_seconds=900)


@dataclass(frozen=True)
class OutboxCounts:
    """What one pass over the outbox did."""

    sent: int = 0
    failed: int = 0
    retried: int = 0

    def __add__(self, other: OutboxCounts) -> OutboxCounts:
        return OutboxCounts(self.sent + other.sent, self.failed + other.failed, self.retried + other.retried)

    def summary(self) -> str:
        """The line ``flask cdp worker --once`` prints."""
        return f"Buy outbox: sent {self.sent}, to be tried again {self.retried}, dropped {self.failed}."


class BuyOutbox:
    """``cdp_buy_outbox`` on one engine: written by pages, emptied by the queue workers."""

    #: The queue worker's name for this job.
    name = "buy outbox"

    def __init__(self, engine: Engine, table: Table, base_url: str, *, lease_seconds: int, max_attempts: int,
                 timeout: float) -> None:
        self.engine = engine
        self.table = table
        self.base_url = base_url
        self.timeout = timeout
        self.queue = LeasedQueue("buys", engine, table, lease_seconds=lease_seconds, max_attempts=max_attempts,
                                 backoff=BACKOFF, error_column="last_error", log=log, item="buy")
        self._retry = retry_policy(1, 0)  # one request per outbox try: the outbox's own tries are the retries
        self._client: OutboundClient | None = None
        #: A short lease (``CDP_WORKER_LEASE_SECONDS``) claims fewer at a time, so another
        #: worker never takes over a buy that is still being sent.
        self.claim_size = max(1, min(CLAIM_SIZE, lease_seconds // SECONDS_PER_BUY))

    # -- the page's side ----------------------------------------------------------------

    def keep(self, events: list[Event]) -> None:
        """Write a page's buys, in one transaction (all or none)."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(insert(self.table), [{"path": event.path(), "queued_at": now, "available_at": now,
                                               "attempts": 0} for event in events])
            notify_workers(conn)

    def waiting(self) -> tuple[int, float | None]:
        """Buys not sent yet, and the age in seconds of the oldest (for ``flask cdp check``)."""
        t = self.table
        with self.engine.connect() as conn:
            count, oldest = conn.execute(select(func.count(), func.min(t.c.queued_at))).one()
        return int(count), (utcnow() - oldest).total_seconds() if oldest is not None else None

    # -- the workers' side ----------------------------------------------------------------

    def run_due(self, worker: Callable[[], str], stop: Callable[[], bool]) -> OutboxCounts:
        """Send every buy that is due now (until ``stop`` says so); what was done. The
        worker's job (see :mod:`..jobs.worker`)."""
        done = OutboxCounts()
        claim = worker()
        while not stop():
            claimed = self.queue.claim(claim, self.claim_size, [self.table.c.path])
            if not claimed:
                break
            for row in claimed:
                done += self._send(claim, int(row.id), row.path)
        return done

    def _send(self, worker: str, row_id: int, path: str) -> OutboxCounts:
        if self._client is None:
            self._client = OutboundClient(timeout=self.timeout, max_answer_bytes=MAX_ANSWER_BYTES, pool_size=1)
        outcome = send_url(self._client, self._retry, f"{self.base_url}/{path}")
        if outcome.problem is None:
            self.queue.forget(row_id)
            TRACKING_EVENTS.labels("sent").inc()
            return OutboxCounts(sent=1)
        released = self.queue.release(row_id, worker, outcome.problem, give_up=outcome.refused)
        if released.outcome == Released.GAVE_UP:
            TRACKING_EVENTS.labels("failed").inc()
            log.error("buy outbox: buy %s dropped after %s %s (%s)", row_id, released.attempts,
                      "try" if released.attempts == 1 else "tries", outcome.problem)
            return OutboxCounts(failed=1)
        if released.outcome == Released.LEASE_LOST:  # another worker took it over: it tries again
            return OutboxCounts()
        log.warning("buy outbox: buy %s not accepted (%s); tried again in %s s", row_id, outcome.problem,
                    released.retry_in)
        return OutboxCounts(retried=1)

    def close(self) -> None:
        """Close the connections to Raptor's host (a worker that stops)."""
        if self._client is not None:
            self._client.close()
            self._client = None
