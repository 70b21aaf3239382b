"""Sends server-side tracking events off the request path (SPEC section 10).

A request only appends an event to a bounded in-process queue; background threads of
the same process build their URLs and send them through one outbound client (a
kept-alive urllib3 pool, a total deadline per try) with the retry policy of
:mod:`cdp_bridge.retries` (urllib3's ``Retry``): connection errors, timeouts, 429 and
5xx are retried with backoff, honouring ``Retry-After``; other 4xx are not.

Raptor takes one event a request, so what lets a process keep up with a slow host is
sending several at once: ``CDP_TRACKING_CONCURRENCY`` threads (16 by default), each with
one transfer in flight. The first thread sends whenever an event waits; the others join
in only while a backlog builds (more than :data:`HELP_BACKLOG` events), as it does when
the host is far away, and leave once it is cleared: a process whose single transfer
keeps up runs one sending thread, so its pages do not share the interpreter with idle
transfers. Buys have a lane of their own, which the threads empty first:
a burst of page views can fill the other lane, whose oldest events are then dropped and
counted, but never costs a buy. So a Raptor outage costs events, never page time or
memory. The threads start with the first event of each process, so under gunicorn each
worker has its own, started after the fork; at exit the queue is drained for a bounded
time.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..constants import SERVER_TRACKING_QUEUE_SIZE, SERVER_TRACKING_TIMEOUT
from ..errors import TrackingArgumentError, first_line
from ..metrics import TRACKING_EVENTS
from ..outbound import Answer, OutboundClient
from ..retries import RetryPolicy, call_with_retries, retry_policy
from .wire import Event

log = logging.getLogger("cdp_bridge.tracking")

#: Seconds between the INFO lines (and the reports ``flask cdp check`` reads).
REPORT_SECONDS = 60.0
#: Seconds the queue is drained for at exit.
DRAIN_SECONDS = 2.0
#: Raptor answers an event with an empty body.
MAX_ANSWER_BYTES = 64 * 1024
#: Transfers in flight per process unless ``CDP_TRACKING_CONCURRENCY`` says otherwise.
DEFAULT_CONCURRENCY = 16
#: Events waiting beyond which the other threads join the first.
HELP_BACKLOG = 16


@dataclass(frozen=True)
class SenderCounts:
    """What one process's sender did since it started."""

    sent: int
    failed: int
    dropped: int
    queued: int


@dataclass(frozen=True)
class SendOutcome:
    """How one event's request ended, after its retries."""

    #: ``None`` when Raptor accepted it; else what went wrong, never the URL (its query
    #: holds the visitor's ids).
    problem: str | None
    #: Raptor answered a 4xx other than 429: sending it again changes nothing.
    refused: bool = False


def send_url(client: OutboundClient, retry: RetryPolicy, url: str) -> SendOutcome:
    """Send one event's request with the retry policy: what the sender threads and the buy
    outbox's workers both do."""
    result = call_with_retries(client, retry, "GET", url, sleep=time.sleep).result
    if not isinstance(result, Answer):
        return SendOutcome(str(result))
    if result.status < 400:
        return SendOutcome(None)
    return SendOutcome(f"Raptor answered {result.status}", refused=result.status < 500 and result.status != 429)


class EventSender:
    """Two bounded queues of events (buys, and the rest) and the threads that send them."""

    def __init__(self, *, queue_size: int = SERVER_TRACKING_QUEUE_SIZE, timeout: float = SERVER_TRACKING_TIMEOUT,
                 retries: int = 3, backoff: float = 0.2, concurrency: int = DEFAULT_CONCURRENCY,
                 report_seconds: float = REPORT_SECONDS, on_report: Callable[[SenderCounts], None] | None = None,
                 ca_file: str | None = None) -> None:
        """``queue_size``: events each lane keeps; ``concurrency``: transfers in flight;
        ``ca_file``: the certificates HTTPS answers are checked against (default certifi's)."""
        self.timeout = timeout
        self.ca_file = ca_file
        self.concurrency = concurrency
        self.report_seconds = report_seconds
        self.on_report = on_report
        self._buys: deque[Event] = deque(maxlen=queue_size)
        self._others: deque[Event] = deque(maxlen=queue_size)
        lock = threading.Lock()
        #: The first thread waits on ``_ready`` (any event), the others on ``_backlog``.
        self._ready, self._backlog = threading.Condition(lock), threading.Condition(lock)
        self._retry = retry_policy(retries + 1, backoff)
        self.sent = self.failed = self.dropped = 0
        self._pid: int | None = None
        self._threads: dict[int, threading.Thread] = {}
        #: Threads of this process that are running: the request path checks this number,
        #: not each thread (``_run`` lowers it as a thread ends).
        self._running = 0
        self._client: OutboundClient | None = None
        self._stopping = False
        self._failing = False
        self._reported_at, self._reported = time.monotonic(), SenderCounts(0, 0, 0, 0)

    # -- the request side -------------------------------------------------------------

    def enqueue(self, event: Event, *, buy: bool = False) -> None:
        """Queue one event (never blocks). A full lane drops its oldest event; a buy goes
        to the buys' lane, which other events never fill."""
        self._ensure_started()
        lane = self._buys if buy else self._others
        with self._ready:
            if len(lane) == lane.maxlen:
                self.dropped += 1
                TRACKING_EVENTS.labels("dropped").inc()
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("server-side tracking: the %s queue is full (%s events); %s oldest dropped so far",
                                "buys'" if buy else "events'", lane.maxlen, self.dropped)
            lane.append(event)
            self._ready.notify()
            if self._waiting() > HELP_BACKLOG:
                self._backlog.notify()

    def counts(self) -> SenderCounts:
        with self._ready:
            return SenderCounts(self.sent, self.failed, self.dropped, self._waiting())

    def _waiting(self) -> int:
        """Events queued (lock held)."""
        return len(self._buys) + len(self._others)

    # -- the threads ----------------------------------------------------------------------

    def _ensure_started(self) -> None:
        pid = os.getpid()
        with self._ready:
            if self._pid == pid and self._running == self.concurrency:
                return
            if self._pid != pid:  # a new process (gunicorn's fork): its own queues, counts, threads, connections
                self._buys.clear()
                self._others.clear()
                self.sent = self.failed = self.dropped = 0
                self._client = None
                self._threads, self._running = {}, 0
            if self._client is None:
                self._client = OutboundClient(timeout=self.timeout, max_answer_bytes=MAX_ANSWER_BYTES,
                                              pool_size=self.concurrency, ca_file=self.ca_file)
            self._pid, self._stopping = pid, False
            for number in range(self.concurrency):
                if number not in self._threads or not self._threads[number].is_alive():
                    thread = threading.Thread(target=self._run, args=(self._client, number == 0),
                                              name=f"cdp-tracking-sender-{number}", daemon=True)
                    thread.start()
                    self._threads[number] = thread
                    self._running += 1
            atexit.register(self.stop)

    def _next_event(self) -> Event | None:
        """The next event to send, buys first; ``None`` when there is none (lock held)."""
        if self._buys:
            return self._buys.popleft()
        return self._others.popleft() if self._others else None

    def _run(self, client: OutboundClient, first: bool) -> None:
        """The first thread takes any event; another waits for a backlog, then sends until
        the queue is empty (and wakes one more while the backlog lasts)."""
        try:
            self._send_until_stopped(client, first)
        finally:
            with self._ready:
                self._running -= 1

    def _send_until_stopped(self, client: OutboundClient, first: bool) -> None:
        helping = False
        while True:
            with self._ready:
                # A helper looks for a backlog before it waits: one that built up while the
                # thread was starting notified nobody, and waiting would miss it.
                event = self._next_event() if first or helping or self._waiting() > HELP_BACKLOG else None
                if event is None and not self._stopping:
                    if first:
                        self._ready.wait(self.report_seconds)
                    else:
                        self._backlog.wait(self.report_seconds)
                    event = self._next_event() if first or self._waiting() >= HELP_BACKLOG or self._stopping else None
                helping = event is not None and not first
                if helping and self._waiting() > HELP_BACKLOG:
                    self._backlog.notify()  # the backlog lasts: one more joins
                report = self._due_report() if first else None
                if event is None and self._stopping:  # nothing is left
                    break
            self._report(report)
            if event is not None:
                self._send(client, event)
        self._report(report)

    def _send(self, client: OutboundClient, event: Event) -> None:
        try:
            url = event.url()
        except TrackingArgumentError as exc:  # check_encodable refuses these first; never crash the thread
            problem: str | None = str(exc)
        else:
            problem = send_url(client, self._retry, url).problem
        ok = problem is None
        with self._ready:
            if ok:
                self.sent += 1
            else:
                self.failed += 1
            recovered, started_failing = ok and self._failing, not ok and not self._failing
            self._failing = not ok
        TRACKING_EVENTS.labels("sent" if ok else "failed").inc()
        if recovered:
            log.info("server-side tracking: Raptor accepts events again")
        elif started_failing:
            log.warning("server-side tracking: an event was not accepted (%s); further failures are counted,"
                        " not logged one by one", problem)

    def _due_report(self, force: bool = False) -> SenderCounts | None:
        """The counts to report, every ``report_seconds`` and when they changed (lock held;
        the report itself is made outside the lock, so a page never waits on it)."""
        if not force and time.monotonic() - self._reported_at < self.report_seconds:
            return None
        counts = SenderCounts(self.sent, self.failed, self.dropped, self._waiting())
        self._reported_at = time.monotonic()
        if counts == self._reported:
            return None
        self._reported = counts
        return counts

    def _report(self, counts: SenderCounts | None) -> None:
        """One INFO line, and ``on_report`` (which records the counts for ``flask cdp check``)."""
        if counts is None:
            return
        log.info("server-side tracking: sent=%s failed=%s dropped=%s queued=%s (this process, since it started)",
                 counts.sent, counts.failed, counts.dropped, counts.queued)
        if self.on_report is not None:
            try:
                self.on_report(counts)
            except Exception as exc:  # noqa: BLE001 - a report must never stop the sender
                log.warning("server-side tracking: could not record the counts (%s)", first_line(exc))

    def stop(self, seconds: float = DRAIN_SECONDS) -> None:
        """Send what is queued for at most ``seconds``, then stop the threads."""
        threads = [thread for thread in self._threads.values() if thread.is_alive()]
        if not threads or self._pid != os.getpid():
            return
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
            self._backlog.notify_all()
        deadline = time.monotonic() + seconds
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._ready:
            left = self._waiting()
            if left:
                self.dropped += left
                TRACKING_EVENTS.labels("dropped").inc(left)
                self._buys.clear()
                self._others.clear()
                log.warning("server-side tracking: %s events not sent before exit", left)
            report = self._due_report(force=True)
            if not any(thread.is_alive() for thread in threads) and self._client is not None:
                self._client.close()
                self._client = None
        self._report(report)
