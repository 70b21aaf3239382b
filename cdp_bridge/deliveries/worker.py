"""Queue workers: apply queued deliveries (and send the buy outbox's buys), as ``flask cdp
worker`` or inside the web process.

Any number of workers may run on any host that shares the database; the inbox's
claims make sure each delivery is applied once. The inline worker is a daemon thread
of the web process, for the embedded SQLite default, so the demo needs no second
process; production with PostgreSQL runs ``flask cdp worker`` instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from ..errors import first_line
from ..tracking.outbox import BuyOutbox, OutboxCounts
from .inbox import DeliveryInbox, worker_identity

log = logging.getLogger("cdp_bridge.worker")

DEFAULT_POLL_SECONDS = 2.0


#: The longest wait between two tries while the database does not answer.
MAX_BACKOFF_SECONDS = 60.0


class QueueWorker:
    """Claims and applies due deliveries, and sends the buy outbox's due buys (when
    ``outbox`` is given), until told to stop. ``ready`` says whether the tables are at the
    schema this code writes; until they are, the worker waits (the check logs one ERROR
    naming ``flask cdp upgrade-db``) instead of failing deliveries."""

    def __init__(self, inbox: DeliveryInbox, *, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 ready: Callable[[], bool] = lambda: True, outbox: BuyOutbox | None = None) -> None:
        self.inbox = inbox
        self.outbox = outbox
        self.poll_seconds = poll_seconds
        self.ready = ready
        self.stop_event = threading.Event()
        self.wake_event = threading.Event()

    def run_once(self) -> int:
        """Apply every delivery that is due now; return how many were processed (none while
        the schema is not the one this code writes)."""
        processed = 0
        if not self.ready():
            return processed
        while not self.stop_event.is_set():
            worker = worker_identity()
            delivery_id = self.inbox.claim(worker)
            if delivery_id is None:
                return processed
            self.inbox.process(delivery_id, worker)
            processed += 1
        return processed

    def send_buys(self) -> OutboxCounts:
        """Send the outbox's due buys (none without an outbox, or before the schema is current)."""
        if self.outbox is None or not self.ready():
            return OutboxCounts()
        return self.outbox.send_due(worker_identity(), stop=self.stop_event.is_set)

    def run_forever(self) -> None:
        """Drain the queue, then wait for a wake-up or the poll interval, until stopped.
        While the database does not answer, wait longer after each failed try (doubling up
        to :data:`MAX_BACKOFF_SECONDS`), with one WARNING when it starts and one INFO line
        when it ends: an outage is a few lines, never a traceback or a busy loop."""
        log.info("queue worker started: poll every %s s, lease %s s, at most %s tries a delivery",
                 self.poll_seconds, self.inbox.lease_seconds, self.inbox.max_attempts)
        if self.outbox is not None:
            log.info("queue worker: sends the buy outbox's buys too (CDP_TRACKING_BUY_OUTBOX)")
        wait = self.poll_seconds
        while not self.stop_event.is_set():
            try:
                self.run_once()
                self.send_buys()
            except SQLAlchemyError as exc:
                if wait == self.poll_seconds:
                    log.warning("queue worker: database unreachable (%s); retrying, less often while it lasts",
                                first_line(exc))
                wait = min(max(wait, self.poll_seconds) * 2, MAX_BACKOFF_SECONDS)
            else:
                if wait != self.poll_seconds:
                    log.info("queue worker: the database answers again")
                wait = self.poll_seconds
            self.wake_event.wait(wait)
            self.wake_event.clear()
        if self.outbox is not None:
            self.outbox.close()
        log.info("queue worker stopped")

    def stop(self) -> None:
        self.stop_event.set()
        self.wake_event.set()

    def wake(self) -> None:
        """Look at the queue now rather than at the next poll."""
        self.wake_event.set()


class InlineWorker:
    """A :class:`QueueWorker` in a daemon thread of the web process, with an app context."""

    def __init__(self, app: Flask, make_inbox: Callable[[], DeliveryInbox], ready: Callable[[], bool] = lambda: True,
                 make_outbox: Callable[[], BuyOutbox | None] = lambda: None) -> None:
        self._app = app
        self._make_inbox = make_inbox
        self._make_outbox = make_outbox
        self._ready = ready
        self._lock = threading.Lock()
        self._worker: QueueWorker | None = None
        self._thread: threading.Thread | None = None

    def ensure_started(self) -> None:
        """Start the thread once per process (gunicorn forks after import)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            with self._app.app_context():
                self._worker = QueueWorker(self._make_inbox(), ready=self._ready, outbox=self._make_outbox())
            self._thread = threading.Thread(target=self._run, name="cdp-inline-worker", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self._worker is not None
        with self._app.app_context():
            self._worker.run_forever()

    def wake(self) -> None:
        self.ensure_started()
        if self._worker is not None:
            self._worker.wake()

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
            if self._thread is not None:
                self._thread.join(timeout)
            self._thread = None
