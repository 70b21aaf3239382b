"""A client for Raptor's Streaming API: ``POST {base}/{account}`` with a JSON array body.

Calls go through the shared outbound client (a pool, no redirects: the stream id is a
secret; a total deadline per call; a bounded answer). Connection errors, timeouts, 429
and 5xx are retried with exponential backoff and jitter, honouring ``Retry-After``; any
other 4xx, and a redirect, is not retried. Each request is logged at DEBUG on
``cdp_bridge.export`` with the stream id redacted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..errors import CDPError
from ..log_text import one_line
from ..outbound import Answer, CallFailure, OutboundClient
from ..retries import call_with_retries, retry_policy
from ..secret import Secret

log = logging.getLogger("cdp_bridge.export")

#: Seconds one try of a batch may take in all, answer included.
TIMEOUT = 60.0
#: Tries of a batch, and the first retry's longest wait (each next one doubles, up to 60 s).
TRIES = 5
BACKOFF = 1.0
#: The Streaming API answers a status and a short message: only an excerpt is ever shown.
MAX_ANSWER_BYTES = 64 * 1024


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
        tries: int = TRIES,
        backoff: float = BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = TIMEOUT,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/{account_number}"
        self._stream_id = stream_id
        self._http = OutboundClient(timeout=timeout, max_answer_bytes=MAX_ANSWER_BYTES, pool_size=1)
        self.retry = retry_policy(tries, backoff, methods=frozenset({"POST"}))
        self.sleep = sleep

    def send(self, body: bytes, *, draft: bool) -> None:
        """POST one batch; returns when accepted, raises :class:`SendFailed` otherwise."""
        headers = {"Content-Type": "application/json", "x-streamid": self._stream_id.reveal()}
        if draft:
            headers["x-isdraft"] = "true"
        log.debug("POST %s (%d bytes, draft=%s, x-streamid=<redacted>)", self.url, len(body), draft)
        outcome = call_with_retries(self._http, self.retry, "POST", self.url, headers=headers, body=body, sleep=self.sleep,
                                    on_retry=self._log_retry)
        result = outcome.result
        if isinstance(result, Answer) and 200 <= result.status < 300:
            log.debug("POST %s answered %s", self.url, result.status)
            return
        raise SendFailed(self._reason(result), outcome.tries)

    def _reason(self, result: Answer | CallFailure) -> str:
        if isinstance(result, CallFailure):
            return {"timeout": "timed out", "connection": "connection failed"}.get(result.reason, result.detail)
        # The answer is shown to the operator: never with the stream id in it.
        return f"HTTP {result.status}{_excerpt(result)}".replace(self._stream_id.reveal(), "<redacted>")

    def _log_retry(self, reason: str, wait: float) -> None:
        log.info("batch not accepted (%s); retrying in %.1f s", reason, wait)

    def close(self) -> None:
        self._http.close()


def _excerpt(answer: Answer, limit: int = 200) -> str:
    text = one_line(answer.text().strip()[:limit])
    return f": {text}" if text else ""
