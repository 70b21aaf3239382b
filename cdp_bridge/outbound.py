"""Calls to servers outside this machine (Raptor's APIs, a site's own webhook), made one
way for every client, so a new client cannot forget a guard.

Every client carries a secret (a key header, a key in the URL path, a stream id, a
webhook's client secret), and every answer comes from a server cdp_bridge does not
control. So a call here:

- never follows a redirect: a 3xx is a failed call (``redirect``) naming only the status
  and the ``Location`` host, since following it would hand the secret to that host;
- has a *total* deadline, enforced while the answer is read: a server that drips its
  headers or body a byte at a time is cut off when the deadline passes (one watchdog
  thread per process shuts the socket down), not after one timeout per byte;
- reads at most ``max_answer_bytes`` of the body, streaming, and stops there;
- asks for an uncompressed answer and never decompresses one, so the limit is the
  memory the answer costs;
- returns a value (:class:`Answer` or :class:`CallFailure`), never an exception, and no
  failure's text carries the URL (whose path or query may hold a key or a visitor id).

:func:`~cdp_bridge.json_text.read_json` parses an answer depth-safely: nesting too deep for the parser
(``RecursionError``) or an answer too large for memory is an :class:`~cdp_bridge.json_text.UnreadableJSON`, like
malformed JSON.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.client import HTTPException
from urllib.parse import urlsplit

import certifi
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
from urllib3.response import BaseHTTPResponse, HTTPResponse

from .log_text import one_line

#: How much of a body one read asks for: small enough that the size limit is checked often.
READ_CHUNK_BYTES = 64 * 1024


def _now() -> float:
    """The monotonic clock, read directly: deadlines are real time even while a test
    freezes ``time.monotonic`` with freezegun."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


@dataclass(frozen=True)
class Answer:
    """A complete answer: its status, headers and body (at most the client's limit), and
    urllib3's response it was read from (what urllib3's ``Retry`` reads)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    response: BaseHTTPResponse | None = field(default=None, repr=False, compare=False)

    def text(self) -> str:
        """The body as text, for a log line or an error excerpt (bad bytes replaced)."""
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class CallFailure:
    """No usable answer. ``reason``: ``timeout``, ``connection``, ``redirect`` or
    ``too_large``; ``detail`` says what happened in words safe for a log line."""

    reason: str
    detail: str
    #: urllib3's error behind it (what urllib3's ``Retry`` counts), when there was one.
    cause: Exception | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


class _RedactedRequestLines(logging.Filter):
    """urllib3 logs each request's path and query at DEBUG (its pool) and the URL of each
    retry (``Retry``). cdp_bridge's URLs may carry a key in the path (Raptor's
    recommendations API) or a visitor's id in the query: the query is cut from those
    lines, and every secret a client registered is redacted."""

    secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = _QUERY.sub("?[query]", record.getMessage())
        for secret in self.secrets:
            message = message.replace(secret, "[redacted]")
        record.msg, record.args = message, ()
        return True


_QUERY = re.compile(r"\?[^\s\"')]*")
_REDACTED_LINES = _RedactedRequestLines()
for _logger_name in ("urllib3.connectionpool", "urllib3.util.retry"):
    logging.getLogger(_logger_name).addFilter(_REDACTED_LINES)


class OutboundClient:
    """A pool of connections to outside servers, with the guards above. Thread-safe: one
    per client, shared by every thread of the process. ``secrets`` (a key in the URL's
    path, say) are redacted from urllib3's own log lines."""

    def __init__(self, *, timeout: float, max_answer_bytes: int, pool_size: int = 10, ca_file: str | None = None,
                 secrets: tuple[str, ...] = ()) -> None:
        _RedactedRequestLines.secrets.update(secret for secret in secrets if secret)
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=pool_size, retries=False, ca_certs=ca_file or certifi.where())
        self._pool.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                fields: Mapping[str, str] | None = None, body: bytes | None = None) -> Answer | CallFailure:
        """Make one call and read its whole answer within the client's timeout. ``fields``
        are the query of a GET."""
        with self._opened(method, url, headers, fields, body) as opened:
            if isinstance(opened, CallFailure):
                return opened
            return self._read(*opened)

    @contextlib.contextmanager
    def streamed(self, url: str, *, headers: Mapping[str, str] | None = None) -> Iterator[StreamedAnswer | CallFailure]:
        """A GET whose body is read as it arrives (by a streaming parser), for answers too
        large to hold twice: the same guards, the body's limit enforced by
        :class:`StreamedAnswer` as it is read, the deadline for the whole call."""
        with self._opened("GET", url, headers, None, None) as opened:
            if isinstance(opened, CallFailure):
                yield opened
                return
            response, deadline = opened
            yield self._refused(response) or StreamedAnswer(response.status, response, self.max_answer_bytes, deadline)

    @contextlib.contextmanager
    def _opened(self, method: str, url: str, headers: Mapping[str, str] | None, fields: Mapping[str, str] | None,
                body: bytes | None) -> Iterator[tuple[BaseHTTPResponse, _Deadline] | CallFailure]:
        """The call's response, its body not read yet, under the deadline for the whole
        call; the connection goes back to the pool after."""
        seconds = self.timeout
        deadline = _WATCHDOG.deadline(seconds)
        _watched.deadline = deadline
        try:
            response = self._pool.request(
                method, url, fields=fields, body=body, headers={**(headers or {}), "Accept-Encoding": "identity"},
                timeout=urllib3.Timeout(connect=seconds, read=seconds), redirect=False, retries=False,
                preload_content=False, decode_content=False)
        except (urllib3.exceptions.HTTPError, HTTPException, OSError) as exc:
            deadline.cancel()
            yield _failure(exc, deadline, seconds)
            return
        finally:
            _watched.deadline = None
        try:
            yield response, deadline
        finally:
            deadline.cancel()
            response.release_conn()

    def _refused(self, response: BaseHTTPResponse) -> CallFailure | None:
        """A redirect (never followed), or a body whose declared length is over the limit."""
        if 300 <= response.status < 400:
            response.close()  # the body is not wanted, and the connection is not kept for it
            host = urlsplit(response.headers.get("Location", "")).hostname or "no Location"
            return CallFailure("redirect", f"answered {response.status} with a redirect to {one_line(host)[:100]},"
                                           " which is not followed")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_answer_bytes:
            response.close()
            return self._too_large()
        return None

    def _too_large(self) -> CallFailure:
        return CallFailure("too_large", f"the answer is larger than {self.max_answer_bytes} bytes")

    def _read(self, response: BaseHTTPResponse, deadline: _Deadline) -> Answer | CallFailure:
        refused = self._refused(response)
        if refused is not None:
            return refused
        chunks: list[bytes] = []
        size = 0
        try:
            while chunk := response.read1(READ_CHUNK_BYTES, decode_content=False):
                size += len(chunk)
                if size > self.max_answer_bytes:
                    response.close()
                    return self._too_large()
                chunks.append(chunk)
        except (urllib3.exceptions.HTTPError, HTTPException, OSError) as exc:
            response.close()
            return _failure(exc, deadline, self.timeout)
        if deadline.expired:  # the watchdog's shutdown can end a body like a closed connection
            response.close()
            return _timed_out(self.timeout)
        return Answer(response.status, response.headers, b"".join(chunks), response)

    def close(self) -> None:
        self._pool.clear()


class AnswerTooLarge(Exception):
    """Raised by :meth:`StreamedAnswer.read` past the client's answer limit."""


class StreamedAnswer:
    """A body read as it arrives, as a binary file (``read(size)``) for a streaming parser:
    past the limit, or when the deadline cut the connection, reading raises
    (:class:`AnswerTooLarge`, :class:`OSError`)."""

    def __init__(self, status: int, response: BaseHTTPResponse, max_bytes: int, deadline: _Deadline) -> None:
        self.status = status
        self._response = response
        self._max_bytes = max_bytes
        self._deadline = deadline
        self.size = 0

    def read(self, size: int = READ_CHUNK_BYTES) -> bytes:
        if size == 0:  # a parser's probe of what the stream gives (ijson asks first)
            return b""
        try:
            chunk = self._response.read1(min(size if size > 0 else READ_CHUNK_BYTES, READ_CHUNK_BYTES),
                                         decode_content=False)
        except (urllib3.exceptions.HTTPError, HTTPException) as exc:
            raise OSError(f"the answer broke off: {type(exc).__name__}") from None
        if self._deadline.expired:
            raise OSError("the answer took longer than the call's deadline")
        self.size += len(chunk)
        if self.size > self._max_bytes:
            self._response.close()
            raise AnswerTooLarge(f"the answer is larger than {self._max_bytes} bytes")
        return chunk

    def whole(self) -> bytes:
        """The rest of the body, within the limit."""
        chunks = []
        while chunk := self.read():
            chunks.append(chunk)
        return b"".join(chunks)


def _failure(exc: Exception, deadline: _Deadline, seconds: float) -> CallFailure:
    """A failed call in words that never carry the URL (urllib3's messages may)."""
    if isinstance(exc, NewConnectionError) and not deadline.expired:  # a ConnectTimeoutError too, in urllib3 2
        return CallFailure("connection", "could not connect", exc)
    if deadline.expired or isinstance(exc, ReadTimeoutError | ConnectTimeoutError | TimeoutError):
        return _timed_out(seconds, exc if isinstance(exc, ReadTimeoutError | ConnectTimeoutError) else None)
    cause = exc.__context__ if isinstance(exc, urllib3.exceptions.ProtocolError) and exc.__context__ else exc
    return CallFailure("connection", f"the connection failed ({type(cause).__name__})", exc)


def _timed_out(seconds: float, cause: Exception | None = None) -> CallFailure:
    # urllib3's Retry counts a read timeout as a read error: so is a deadline that passed.
    return CallFailure("timeout", f"no complete answer within {seconds:g} s",
                       cause or ReadTimeoutError(None, "", "the call's deadline passed"))  # type: ignore[arg-type]


class _Deadline:
    """A call's total deadline: when it passes, the watchdog shuts down the socket being
    read (a read blocked on it returns at once); :attr:`expired` tells the reader why."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False
        self.cancelled = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._socket = sock
            expired = self.expired
        if expired:
            _shut_down(sock)

    def cancel(self) -> None:
        self.cancelled = True

    def expire(self) -> None:
        with self._lock:
            if self.cancelled:
                return
            self.expired = True
            sock = self._socket
        if sock is not None:
            _shut_down(sock)


#: Seconds the deadline thread waits with no deadline before it ends.
WATCHDOG_IDLE_SECONDS = 2.0


class _Watchdog:
    """One thread per process that expires the calls' deadlines in order: a call costs a
    heap push, not a thread of its own. Started again in a forked process (gunicorn's
    workers), where the parent's thread does not run."""

    def __init__(self) -> None:
        self._order = itertools.count()
        self.reset()

    def reset(self) -> None:
        """A fresh start, as in a forked child: no thread runs there, and a lock the
        parent's thread held at the fork would stay held."""
        self._ready = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._running = False

    def deadline(self, seconds: float) -> _Deadline:
        deadline = _Deadline(_now() + seconds)
        with self._ready:
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="cdp-outbound-deadlines", daemon=True).start()
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._heap[0][2] is deadline:
                self._ready.notify()
        return deadline

    def _run(self) -> None:
        """Expire deadlines as they come; with none left for :data:`WATCHDOG_IDLE_SECONDS`,
        end (the next call starts the thread again), so no thread outlives the calls."""
        while True:
            with self._ready:
                while not self._heap or self._heap[0][0] > _now():
                    if self._heap:
                        self._ready.wait(self._heap[0][0] - _now())
                    elif not self._ready.wait(WATCHDOG_IDLE_SECONDS) and not self._heap:
                        self._running = False
                        return
                _, _, due = heapq.heappop(self._heap)
            due.expire()


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG.reset)


def _shut_down(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing to interrupt
        sock.shutdown(socket.SHUT_RDWR)


#: The deadline of the call this thread is making, for the connection that reads it.
_watched = threading.local()


def _watch(sock: socket.socket | None) -> None:
    """Hand a connection's socket to the current call's deadline just before the answer's
    headers are read; the same socket then carries the body."""
    deadline: _Deadline | None = getattr(_watched, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # urllib3's own signature
        _watch(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _watch(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection
