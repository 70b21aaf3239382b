"""Retrying calls to Raptor: one policy, urllib3's ``Retry``, for the server-side
tracking sender and the export.

``Retry`` decides what is retried (connection errors, timeouts, 429 and 5xx; no other
4xx), how often, and how long to wait, honouring the server's ``Retry-After``. The
calls themselves go through :class:`~cdp_bridge.outbound.OutboundClient` (no redirects,
a total deadline per try, a bounded answer); a redirect or an oversized answer is never
retried. The wait goes through the caller's ``sleep``, so a test records it instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from urllib3.exceptions import HTTPError
from urllib3.util.retry import Retry

from .outbound import Answer, CallFailure, OutboundClient

#: The longest ``Retry-After`` obeyed: a server asking for more is asked again sooner.
MAX_RETRY_AFTER = 300.0
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


class RetryPolicy(Retry):
    """urllib3's ``Retry`` with "equal jitter" backoff: half of each wait is fixed, half
    random, and the first retry waits too (urllib3's own first retry is immediate), so
    many clients retrying after one outage do not all come back at once."""

    def get_backoff_time(self) -> float:
        if not self.history:
            return 0.0
        ceiling: float = min(self.backoff_max, self.backoff_factor * 2 ** (len(self.history) - 1))
        return ceiling / 2 + ceiling / 2 * random.random()


def retry_policy(tries: int, backoff: float, *, max_backoff: float = 60.0, methods: frozenset[str] = frozenset({"GET"})
                 ) -> RetryPolicy:
    """At most ``tries`` attempts, the first retry waiting ``backoff/2``–``backoff`` s."""
    retries = tries - 1
    return RetryPolicy(total=retries, connect=retries, read=retries, status=retries, other=0, redirect=0,
                       backoff_factor=backoff, backoff_max=max_backoff, status_forcelist=RETRIED_STATUSES,
                       allowed_methods=methods, respect_retry_after_header=True, raise_on_status=False)


@dataclass(frozen=True)
class RetriedCall:
    """How a call with retries ended: its last answer or failure, and how many tries it took."""

    result: Answer | CallFailure
    tries: int


def call_with_retries(client: OutboundClient, retry: Retry, method: str, url: str, *,
                      headers: Mapping[str, str] | None = None, body: bytes | None = None,
                      sleep: Callable[[float], None], on_retry: Callable[[str, float], None] | None = None) -> RetriedCall:
    """Call until an answer is not to be retried, or the tries run out. ``on_retry`` hears
    each retry's reason and wait."""
    tries = 0
    while True:
        tries += 1
        result = client.request(method, url, headers=headers, body=body)
        if isinstance(result, CallFailure):
            if result.reason not in ("timeout", "connection") or result.cause is None:
                return RetriedCall(result, tries)  # a redirect or an oversized answer: trying again changes nothing
            response, error, reason = None, result.cause, result.detail
        else:
            if not retry.is_retry(method, result.status, has_retry_after="Retry-After" in result.headers):
                return RetriedCall(result, tries)
            response, error, reason = result.response, None, f"HTTP {result.status}"
        try:
            retry = retry.increment(method, url, response=response, error=error)
        except HTTPError:  # MaxRetryError, or the error again for a method not retried after a read error
            return RetriedCall(result, tries)
        after = retry.get_retry_after(response) if response is not None else None
        wait = min(after, MAX_RETRY_AFTER) if after is not None else retry.get_backoff_time()
        if on_retry is not None:
            on_retry(reason, wait)
        sleep(wait)
