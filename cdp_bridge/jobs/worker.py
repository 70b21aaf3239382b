"""Queue workers: run the app's queue jobs (apply queued deliveries, send the buy
outbox's buys …), as ``flask cdp worker`` or inside the web process.

Any number of workers may run on any host that shares the database; each job's leased
queue (:mod:`..store.leased_queue`) makes sure each row is worked on by one worker at a
time. The worker knows no job by name: it runs the ones the state registers
(:meth:`~cdp_bridge.state.CDPState.queue_jobs`), so a new kind of queued work is a job,
not a change here. The inline worker is a daemon thread of the web process, for the
embedded SQLite default, so the demo needs no second process; production with
PostgreSQL runs ``flask cdp worker`` instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from ..errors import first_line
from ..store.leased_queue import LeasedQueue, worker_identity

log = logging.getLogger("cdp_bridge.worker")

DEFAULT_POLL_SECONDS = 2.0


#: The longest wait between two tries while the database does not answer.
MAX_BACKOFF_SECONDS = 60.0


class JobReport(Protocol):
    """What one pass of a job did."""

    def summary(self) -> str:
        """One line for ``flask cdp worker --once`` (empty: nothing worth a line)."""
        ...


class QueueJob(Protocol):
    """One kind of queued work: a leased queue and what to do with its rows."""

    #: For the worker's first log line ("deliveries", "buy outbox").
    name: str
    #: The store's leased queue the job works through.
    queue: LeasedQueue

    def run_due(self, worker: Callable[[], str], stop: Callable[[], bool]) -> JobReport:
        """Work every row due now, claiming as ``worker()`` names, until ``stop`` says so."""
        ...

    def close(self) -> None:
        """Let go of connections to outside services (a worker that stops)."""
        ...


class ScheduledJob(Protocol):
    """Work done on a schedule rather than from a queue (``CDP_RECONCILE_SCHEDULE``)."""

    name: str

    def describe(self) -> str:
        """For the worker's first log line."""
        ...

    def run_due(self, worker: Callable[[], str], stop: Callable[[], bool]) -> JobReport: ...

    def close(self) -> None: ...


Job = QueueJob | ScheduledJob


def _described(job: Job) -> str:
    queue = getattr(job, "queue", None)
    if isinstance(queue, LeasedQueue):
        return f"{job.name} (lease {queue.lease_seconds} s, at most {queue.max_attempts} tries)"
    return job.describe()  # type: ignore[union-attr]  # a ScheduledJob


class QueueWorker:
    """Runs its jobs' due work until told to stop. ``ready`` says whether the tables are
    at the schema this code writes; until they are, the worker waits (the check logs
    one ERROR naming ``flask cdp upgrade-db``) instead of failing rows."""

    def __init__(self, jobs: Sequence[Job], *, poll_seconds: float = DEFAULT_POLL_SECONDS,
                 ready: Callable[[], bool] = lambda: True) -> None:
        self.jobs: list[Job] = list(jobs)
        self.poll_seconds = poll_seconds
        self.ready = ready
        self.stop_event = threading.Event()
        self.wake_event = threading.Event()

    def run_once(self) -> list[JobReport]:
        """Run every job over what is due now; what each did (nothing while the schema is
        not the one this code writes)."""
        if not self.ready():
            return []
        return [job.run_due(worker_identity, self.stop_event.is_set) for job in self.jobs]

    def run_forever(self) -> None:
        """Run the jobs, then wait for a wake-up or the poll interval, until stopped.
        While the database does not answer, wait longer after each failed try (doubling up
        to :data:`MAX_BACKOFF_SECONDS`), with one WARNING when it starts and one INFO line
        when it ends: an outage is a few lines, never a traceback or a busy loop."""
        log.info("queue worker started: poll every %s s; jobs: %s", self.poll_seconds,
                 ", ".join(_described(job) for job in self.jobs))
        wait = self.poll_seconds
        while not self.stop_event.is_set():
            try:
                self.run_once()
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
        self.close()
        log.info("queue worker stopped")

    def close(self) -> None:
        for job in self.jobs:
            job.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake_event.set()

    def wake(self) -> None:
        """Look at the queues now rather than at the next poll."""
        self.wake_event.set()


class InlineWorker:
    """A :class:`QueueWorker` in a daemon thread of the web process, with an app context."""

    def __init__(self, app: Flask, make_jobs: Callable[[], Sequence[Job]],
                 ready: Callable[[], bool] = lambda: True) -> None:
        self._app = app
        self._make_jobs = make_jobs
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
                self._worker = QueueWorker(self._make_jobs(), ready=self._ready)
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
