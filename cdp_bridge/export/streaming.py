"""A client for Raptor's Streaming API: ``POST {base}/{account}`` with a JSON array body.

Calls go through the shared outbound client (a pool, no redirects: the stream id is a
secret; a total deadline per call; a bounded answer). Connection errors, timeouts, 429
and 5xx are retried with exponential backoff and jitter, honouring ``Retry-After``; any
other 4xx, and a redirect, is not retried. Each request is logged at DEBUG on
``cdp_bridge.export`` with the stream id redacted.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CDPError
from ..log_text import one_line
from ..outbound import Answer, OutboundClient
from ..secret import Secret

log = logging.getLogger("cdp_bridge.export")

#: Seconds a batch's call may take in all, answer included.
TIMEOUT = 60.0
#: The Streaming API answers a status and a short message: only an excerpt is ever shown.
MAX_ANSWER_BYTES = 64 * 1024
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries, and the backoff between them (seconds)."""

    tries: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int, jitter: float) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        ceiling: float = min(self.max_delay, self.base_delay * 2**attempt)
        return ceiling / 2 + ceiling / 2 * jitter


class SendFailed(CDPError):
    """A batch was not accepted; ``reason`` says why (status or connection problem)."""

    def __init__(self, reason: str, tries: int) -> None:
        super().__init__(f"{reason} (after {tries} {'try' if tries == 1 else 'tries'})")
        self.reason = reason
        self.tries = tries


class StreamClient:
    """Sends batches to one stream of one Raptor account."""

    def __init__(
        self,
        base_url: str,
        account_number: str,
        stream_id: Secret,
        *,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        timeout: float = TIMEOUT,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/{account_number}"
        self._stream_id = stream_id
        self._http = OutboundClient(timeout=timeout, max_answer_bytes=MAX_ANSWER_BYTES, pool_size=1)
        self.retry = retry
        self.sleep = sleep
        self.jitter = jitter
        self.timeout = timeout

    def send(self, body: bytes, *, draft: bool) -> None:
        """POST one batch; returns when accepted, raises :class:`SendFailed` otherwise."""
        headers = {"Content-Type": "application/json", "x-streamid": self._stream_id.reveal()}
        if draft:
            headers["x-isdraft"] = "true"
        for attempt in range(self.retry.tries):
            reason, retry_after = self._try(body, headers, draft)
            if reason is None:
                return
            if retry_after is False or attempt + 1 == self.retry.tries:
                raise SendFailed(reason, attempt + 1)
            delay = retry_after if retry_after is not None else self.retry.delay(attempt, self.jitter())
            log.info("batch not accepted (%s); retrying in %.1f s", reason, delay)
            self.sleep(delay)
        raise AssertionError("unreachable")

    def _try(self, body: bytes, headers: dict[str, str], draft: bool) -> tuple[str | None, float | bool | None]:
        """One request: (None, _) when accepted; else (reason, retry-after or None, or False: do not retry)."""
        log.debug("POST %s (%d bytes, draft=%s, x-streamid=<redacted>)", self.url, len(body), draft)
        answer = self._http.request("POST", self.url, body=body, headers=headers)
        if not isinstance(answer, Answer):
            log.debug("POST %s failed: %s", self.url, answer)
            if answer.reason == "timeout":
                return "timed out", None
            if answer.reason == "connection":
                return "connection failed", None
            return answer.detail, False  # a redirect or an oversized answer: trying again changes nothing
        log.debug("POST %s answered %s", self.url, answer.status)
        if 200 <= answer.status < 300:
            return None, None
        # The answer is shown to the operator: never with the stream id in it.
        reason = f"HTTP {answer.status}{_excerpt(answer)}".replace(self._stream_id.reveal(), "<redacted>")
        if answer.status == 429 or answer.status >= 500:
            return reason, retry_after_seconds(answer.headers.get("Retry-After"))
        return reason, False

    def close(self) -> None:
        self._http.close()


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date), capped; ``None`` if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    seconds = moment.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _excerpt(answer: Answer, limit: int = 200) -> str:
    text = one_line(answer.text().strip()[:limit])
    return f": {text}" if text else ""
