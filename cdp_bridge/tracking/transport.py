"""How the sender thread sends one event: a GET through libcurl, with urllib3's retries.

The sender thread lives in the web process and shares the GIL with its pages. A GET
through urllib3 or ``requests`` runs in Python, so a busy sender takes its share of the
GIL from the pages. pycurl runs the whole transfer in C with the GIL released, so the
transfer runs beside the pages instead of between them: on this machine a CPU-bound loop
ran 1.19x slower beside a busy urllib3 sender and 0.92x beside a busy pycurl one, and a
GET cost the process 127 µs of CPU instead of 277-383 (see
``benchmarks/server_tracking.py`` for the page figures).

The retry policy is still urllib3's ``Retry`` (what is retried, how often, the backoff):
:func:`send_with_retries` asks it after each attempt.
"""

from __future__ import annotations

import certifi
import pycurl
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ProtocolError
from urllib3.response import HTTPResponse
from urllib3.util.retry import Retry

from ..errors import first_line

#: libcurl's codes for a connection that was never made: urllib3's ``Retry`` counts them
#: as connection errors, anything else as a read error.
NOT_CONNECTED = frozenset({pycurl.E_COULDNT_RESOLVE_HOST, pycurl.E_COULDNT_CONNECT})


class ConnectionFailed(ConnectTimeoutError):
    """No connection was made (refused, or the host unknown); ``Retry`` counts it as a
    connection error, as it does urllib3's own."""


class CurlTransport:
    """One libcurl handle: its connection is kept alive between events. Made and used by
    one thread only (libcurl handles are not shared)."""

    def __init__(self, timeout: float, ca_file: str | None = None) -> None:
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)  # timeouts without signals: safe in a thread
        curl.setopt(pycurl.TIMEOUT_MS, max(1, round(timeout * 1000)))
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        # The wheels' libcurl looks for its build system's CA file: name certifi's, as requests does.
        curl.setopt(pycurl.CAINFO, ca_file or certifi.where())
        curl.setopt(pycurl.WRITEFUNCTION, _discard)
        self._curl = curl

    def get(self, url: str) -> tuple[int, int]:
        """GET ``url``: its status and ``Retry-After`` seconds (0 without one), or
        :class:`ConnectionFailed` / urllib3's ProtocolError."""
        self._curl.setopt(pycurl.URL, url)
        try:
            self._curl.perform()
        except pycurl.error as exc:
            code, message = exc.args[0], str(exc.args[1] if len(exc.args) > 1 else exc)
            if code in NOT_CONNECTED:
                raise ConnectionFailed(message) from None
            raise ProtocolError(message) from None
        return int(self._curl.getinfo(pycurl.RESPONSE_CODE)), int(self._curl.getinfo(pycurl.RETRY_AFTER))

    def close(self) -> None:
        self._curl.close()


def _discard(data: bytes) -> None:
    """Raptor's answer has nothing to read."""


def send_with_retries(transport: CurlTransport, retry: Retry, url: str) -> str | None:
    """Send one event; ``None`` once it is accepted, else what went wrong (never the URL,
    whose query holds the visitor's ids)."""
    while True:
        response: HTTPResponse | None = None
        error: Exception | None = None
        try:
            status, retry_after = transport.get(url)
        except (ConnectTimeoutError, ProtocolError) as exc:
            error, problem = exc, f"{type(exc).__name__}: {first_line(exc)}".split("?")[0]
        else:
            problem = f"Raptor answered {status}"
            if not retry.is_retry("GET", status, has_retry_after=retry_after > 0):
                return None if status < 400 else problem
            # what Retry reads of an answer (made only for one to retry: it costs 5 µs of GIL)
            response = HTTPResponse(status=status, preload_content=False,
                                    headers={"Retry-After": str(retry_after)} if retry_after > 0 else None)
        try:
            retry = retry.increment("GET", url, response=response, error=error)
        except MaxRetryError:
            return problem
        retry.sleep(response)  # the backoff, or the host's Retry-After
