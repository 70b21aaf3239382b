"""``DeleteUser`` calls to Raptor's GDPR API (SPEC section 14), sent by the queue workers.

``POST {CDP_GDPR_API_URL}/{CDP_ACCOUNT_NUMBER}/DeleteUser``, header ``x-api-key``, body
``{"UserId": "<identifier>"}``, one identifier a request, as the site sends it to Raptor.
Each call is a row of ``cdp_gdpr_deletions`` on the store's leased queue: a 2xx (Raptor's
deletion has started) deletes the row, the only place the identifier waited; a timeout,
a 429 or a 5xx is tried again after the backoff (1 min, doubling, at most an hour) until
``CDP_FORGET_GIVE_UP_DAYS`` have passed; any other 4xx is given up at once. A given-up
call is deleted too, with one ERROR that names the request's number, never the person.
A worker killed mid-send loses nothing: its claim ends with its lease and another worker
sends the call again (Raptor's ``DeleteUser`` of a deleted person is harmless).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, func, select, update

from ..metrics import ERASURE_REQUESTS
from ..outbound import Answer, OutboundClient
from ..settings import GdprApi
from ..store import history
from ..store.leased_queue import Backoff, LeasedQueue, Released
from ..store.tables import CDPTables, utcnow
from .erasure import RaptorState

log = logging.getLogger("cdp_bridge.privacy")

#: Every try until the give-up days have passed: the days, not a count, end the tries.
MAX_ATTEMPTS = 1_000_000
BACKOFF = Backoff(base_seconds=60, max_seconds=3600)
#: Calls a worker claims at a time (each takes at most the API's timeout).
CLAIM_SIZE = 10


@dataclass(frozen=True)
class DeletionCounts:
    """What one pass over the queue did."""

    accepted: int = 0
    retried: int = 0
    given_up: int = 0

    def __add__(self, other: DeletionCounts) -> DeletionCounts:
        return DeletionCounts(self.accepted + other.accepted, self.retried + other.retried,
                              self.given_up + other.given_up)

    def summary(self) -> str:
        """The line ``flask cdp worker --once`` prints."""
        return (f"Erasure requests: Raptor accepted {self.accepted}, to be tried again {self.retried},"
                f" given up {self.given_up}.")


class GdprDeletions:
    """The queue of ``DeleteUser`` calls, and the job that sends them."""

    #: The queue worker's name for this job.
    name = "erasure requests"

    def __init__(self, engine: Engine, tables: CDPTables, api: GdprApi, account_number: str, *, lease_seconds: int,
                 give_up_days: int) -> None:
        assert api.key is not None  # made only with CDP_GDPR_API_KEY (see CDPState.queue_jobs)
        self.engine = engine
        self.tables = tables
        self.url = f"{api.url}/{account_number}/DeleteUser"
        self.api = api
        self.queue = LeasedQueue("gdpr_deletions", engine, tables.gdpr_deletions, lease_seconds=lease_seconds,
                                 max_attempts=MAX_ATTEMPTS, backoff=BACKOFF, error_column="last_error", log=log,
                                 item="DeleteUser call", give_up_after=timedelta(days=give_up_days),
                                 secure_delete=True)
        self._client: OutboundClient | None = None

    def run_due(self, worker: Callable[[], str], stop: Callable[[], bool]) -> DeletionCounts:
        """Send every call that is due now (until ``stop`` says so)."""
        done = DeletionCounts()
        claim = worker()
        g = self.tables.gdpr_deletions
        while not stop():
            claimed = self.queue.claim(claim, CLAIM_SIZE, [g.c.request_id, g.c.identifier])
            if not claimed:
                break
            for row in claimed:
                done += self._send(claim, int(row.id), int(row.request_id), row.identifier)
        return done

    def _send(self, worker: str, row_id: int, request_id: int, identifier: str) -> DeletionCounts:
        if self._client is None:
            assert self.api.key is not None
            self._client = OutboundClient(timeout=self.api.timeout, max_answer_bytes=self.api.max_bytes, pool_size=1,
                                          secrets=(self.api.key.reveal(),))
        assert self.api.key is not None
        answer = self._client.request("POST", self.url, body=json.dumps({"UserId": identifier}).encode("utf-8"),
                                      headers={"x-api-key": self.api.key.reveal(), "Content-Type": "application/json"})
        status = answer.status if isinstance(answer, Answer) else None
        if status is not None and 200 <= status < 300:
            self.queue.forget(row_id)
            self._answered(request_id, status, final=True)
            ERASURE_REQUESTS.labels("accepted").inc()
            history.add_counts_now(self.engine, self.tables, {history.ERASURES_ACCEPTED: 1})
            return DeletionCounts(accepted=1)
        problem = f"Raptor answered {status}" if status is not None else str(answer)
        refused = status is not None and status < 500 and status != 429
        released = self.queue.release(row_id, worker, problem, give_up=refused)
        if released.outcome == Released.LEASE_LOST:
            return DeletionCounts()
        if status is not None:
            self._answered(request_id, status, final=released.outcome == Released.GAVE_UP)
        if released.outcome == Released.GAVE_UP:
            self._give_up(request_id)
            ERASURE_REQUESTS.labels("given_up").inc()
            history.add_counts_now(self.engine, self.tables, {history.ERASURES_GIVEN_UP: 1})
            log.error("erasure request %s: Raptor's GDPR API was not asked to delete one identifier: %s after %s %s"
                      " (given up; see docs/privacy.md)", request_id, problem, released.attempts,
                      "try" if released.attempts == 1 else "tries")
            return DeletionCounts(given_up=1)
        ERASURE_REQUESTS.labels("retried").inc()
        log.warning("erasure request %s: DeleteUser not accepted (%s); tried again in %s s", request_id, problem,
                    released.retry_in)
        return DeletionCounts(retried=1)

    def _answered(self, request_id: int, status: int, *, final: bool) -> None:
        """Record Raptor's last answer; once the request's last call is done, accepted."""
        e, g = self.tables.erasure_requests, self.tables.gdpr_deletions
        with self.engine.begin() as conn:
            conn.execute(update(e).where(e.c.id == request_id).values(raptor_status=status, raptor_answered_at=utcnow()))
            if final:
                waiting = conn.scalar(select(func.count()).where(g.c.request_id == request_id))
                if not waiting:
                    conn.execute(update(e).where(e.c.id == request_id, e.c.raptor_state == RaptorState.QUEUED)
                                 .values(raptor_state=RaptorState.ACCEPTED))

    def _give_up(self, request_id: int) -> None:
        e = self.tables.erasure_requests
        with self.engine.begin() as conn:
            conn.execute(update(e).where(e.c.id == request_id).values(raptor_state=RaptorState.GIVEN_UP))

    def close(self) -> None:
        """Close the connections to Raptor's GDPR API (a worker that stops)."""
        if self._client is not None:
            self._client.close()
            self._client = None
