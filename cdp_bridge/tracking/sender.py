"""Sends server-side tracking events off the request path (SPEC section 10).

A request only appends an event to a bounded in-process queue; a background thread of
the same process builds its URL and sends it through the shared outbound client (a
kept-alive urllib3 pool, a total deadline per try) with the retry policy of
:mod:`cdp_bridge.retries` (urllib3's ``Retry``): connection errors, timeouts, 429 and
5xx are retried with backoff, honouring ``Retry-After``; other 4xx are not. When the queue is full the oldest events are dropped and
counted, so a Raptor outage costs events, never page time or memory. The thread starts
with the first event of each process, so under gunicorn each worker has its own,
started after the fork; at exit the queue is drained for a bounded time.
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
from ..retries import call_with_retries, retry_policy
from .wire import Event

log = logging.getLogger("cdp_bridge.tracking")

#: Seconds between the INFO lines (and the reports ``flask cdp check`` reads).
REPORT_SECONDS = 60.0
#: Seconds the queue is drained for at exit.
DRAIN_SECONDS = 2.0
#: Raptor answers an event with an empty body.
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class SenderCounts:
    """What one process's sender did since it started."""

    sent: int
    failed: int
    dropped: int
    queued: int


class EventSender:
    """A bounded queue of events and the thread that sends them."""

    def __init__(self, *, queue_size: int = SERVER_TRACKING_QUEUE_SIZE, timeout: float = SERVER_TRACKING_TIMEOUT,
                 retries: int = 3, backoff: float = 0.2, report_seconds: float = REPORT_SECONDS,
                 on_report: Callable[[SenderCounts], None] | None = None, ca_file: str | None = None) -> None:
        """``ca_file``: the certificates HTTPS answers are checked against (default certifi's)."""
        self.timeout = timeout
        self.ca_file = ca_file
        self.report_seconds = report_seconds
        self.on_report = on_report
        self._queue: deque[Event] = deque(maxlen=queue_size)
        self._ready = threading.Condition()
        self._retry = retry_policy(retries + 1, backoff)
        self.sent = self.failed = self.dropped = 0
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._failing = False

    # -- the request side -------------------------------------------------------------

    def enqueue(self, event: Event) -> None:
        """Queue one event (never blocks); the oldest is dropped when the queue is full."""
        self._ensure_started()
        with self._ready:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
                TRACKING_EVENTS.labels("dropped").inc()
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("server-side tracking: queue full (%s events); %s oldest dropped so far",
                                self._queue.maxlen, self.dropped)
            self._queue.append(event)
            self._ready.notify()

    def counts(self) -> SenderCounts:
        with self._ready:
            return SenderCounts(self.sent, self.failed, self.dropped, len(self._queue))

    # -- the thread -----------------------------------------------------------------------

    def _ensure_started(self) -> None:
        pid = os.getpid()
        with self._ready:
            if self._pid == pid and self._thread is not None and self._thread.is_alive():
                return
            if self._pid != pid:  # a new process (gunicorn's fork): its own queue and counts
                self._queue.clear()
                self.sent = self.failed = self.dropped = 0
            self._pid, self._stopping = pid, False
            self._thread = threading.Thread(target=self._run, name="cdp-tracking-sender", daemon=True)
            self._thread.start()
            atexit.register(self.stop)

    def _run(self) -> None:
        client = OutboundClient(timeout=self.timeout, max_answer_bytes=MAX_ANSWER_BYTES, pool_size=1, ca_file=self.ca_file)
        reported_at, reported = time.monotonic(), SenderCounts(0, 0, 0, 0)
        while True:
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait(self.report_seconds)
                    if time.monotonic() - reported_at >= self.report_seconds:
                        break
                event = self._queue.popleft() if self._queue else None
                if event is None and self._stopping:
                    break
            if event is not None:
                self._send(client, event)
            if time.monotonic() - reported_at >= self.report_seconds:
                reported_at, reported = time.monotonic(), self._report(reported)
        self._report(reported)
        client.close()

    def _send(self, client: OutboundClient, event: Event) -> None:
        try:
            url = event.url()
        except TrackingArgumentError as exc:  # check_encodable refuses these first; never crash the thread
            problem: str | None = str(exc)
        else:
            result = call_with_retries(client, self._retry, "GET", url, sleep=time.sleep).result
            ok_answer = isinstance(result, Answer) and result.status < 400
            # never the URL: its query holds the visitor's ids
            problem = None if ok_answer else (f"Raptor answered {result.status}" if isinstance(result, Answer) else str(result))
        ok = problem is None
        with self._ready:
            if ok:
                self.sent += 1
            else:
                self.failed += 1
        TRACKING_EVENTS.labels("sent" if ok else "failed").inc()
        if ok and self._failing:
            self._failing = False
            log.info("server-side tracking: Raptor accepts events again")
        elif not ok and not self._failing:
            self._failing = True
            log.warning("server-side tracking: an event was not accepted (%s); further failures are counted,"
                        " not logged one by one", problem)

    def _report(self, last: SenderCounts) -> SenderCounts:
        counts = self.counts()
        if counts != last:
            log.info("server-side tracking: sent=%s failed=%s dropped=%s queued=%s (this process, since it started)",
                     counts.sent, counts.failed, counts.dropped, counts.queued)
            if self.on_report is not None:
                try:
                    self.on_report(counts)
                except Exception as exc:  # noqa: BLE001 - a report must never stop the sender
                    log.warning("server-side tracking: could not record the counts (%s)", first_line(exc))
        return counts

    def stop(self, seconds: float = DRAIN_SECONDS) -> None:
        """Send what is queued for at most ``seconds``, then stop the thread."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._pid != os.getpid():
            return
        with self._ready:
            self._stopping = True
            self._ready.notify_all()
        thread.join(seconds)
        with self._ready:
            left = len(self._queue)
            if left:
                self.dropped += left
                TRACKING_EVENTS.labels("dropped").inc(left)
                self._queue.clear()
                log.warning("server-side tracking: %s events not sent before exit", left)
