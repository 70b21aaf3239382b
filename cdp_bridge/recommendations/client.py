"""Raptor's Recommendations API, asked for one module's recommendations (SPEC section 11).

``GET {CDP_RECOMMENDATIONS_API_URL}/v1/{account}/{method}/{count}/{api key}?{parameter}=…&json=True``
through the shared outbound client (a pool, no redirects, a total deadline of
``CDP_RECOMMENDATIONS_TIMEOUT``, a bounded answer) and no retries: a page waits for it,
so a failure is reported at once as :class:`RecommendationsFailure` and the page renders
the site's fallback. The key is in the URL's path: it is registered with the outbound
client's log filter, redacted from this module's lines, and never in a ``repr`` or an
error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from urllib.parse import quote

from ..api_calls import ApiFailure
from ..log_text import one_line
from ..outbound import Answer, OutboundClient
from ..secret import Secret
from .answer import Recommendation, UnreadableAnswer, parse_recommendations

log = logging.getLogger("cdp_bridge.recommendations")

#: The largest answer read: a module's answer is a few hundred ids.
MAX_ANSWER_BYTES = 1024 * 1024
#: Connections kept per app process: one per web thread is plenty.
POOL_SIZE = 32


class RecommendationsFailure(ApiFailure):
    """The Recommendations API gave no usable answer; ``reason`` says which kind of failure."""


class RecommendationsClient:
    """Asks Raptor's Recommendations API for a module's recommendations."""

    def __init__(self, base_url: str, account_number: str, api_key: Secret, timeout: float,
                 max_answer_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.base_url = base_url.rstrip("/")
        self.account_number = account_number
        #: What every cached answer's key starts with: the API's URL and the account, percent-encoded.
        self.cache_key_prefix = (f"cdp_bridge:recommended_ids:{quote(self.base_url, safe='')}:"
                                 f"{quote(account_number, safe='')}")
        self._api_key = api_key
        self.timeout = timeout
        self._http = OutboundClient(timeout=timeout, max_answer_bytes=max_answer_bytes, pool_size=POOL_SIZE,
                                    secrets=(api_key.reveal(), quote(api_key.reveal(), safe="")))

    def __repr__(self) -> str:
        return f"RecommendationsClient({self.base_url!r}, account {self.account_number}, key [redacted])"

    def url(self, method: str, count: int) -> str:
        """The module's URL, key and all: for the request only, never a log line."""
        return (f"{self.base_url}/v1/{quote(self.account_number, safe='')}/{quote(method, safe='')}/{count}/"
                f"{quote(self._api_key.reveal(), safe='')}")

    def shown_url(self, method: str, count: int) -> str:
        """The URL as a log line or a message may show it."""
        return f"{self.base_url}/v1/{self.account_number}/{method}/{count}/[key]"

    def recommend(self, method: str, count: int, parameters: Mapping[str, str], *,
                  split_variants: bool) -> tuple[Recommendation, ...]:
        """The module's recommendations, in Raptor's order.

        Raises :class:`RecommendationsFailure` on a timeout, a connection error, a redirect
        (never followed: the key would go to the host it names), an answer over the size
        limit, a refusal (401/403 ``unauthorized``, 404 ``not_found``: no such module or
        account, other 4xx ``refused``), a 5xx or an answer that is not an array.
        """
        answer = self._http.request("GET", self.url(method, count), fields={**parameters, "json": "True"},
                                    headers={"Accept": "application/json"})
        shown = self.shown_url(method, count)
        if not isinstance(answer, Answer):
            log.debug("GET %s failed: %s", shown, answer)
            raise RecommendationsFailure(answer.reason, answer.detail)
        if log.isEnabledFor(logging.DEBUG):  # the excerpt is made only for a log that shows it
            log.debug("GET %s answered %s: %s", shown, answer.status, self._redacted(one_line(answer.text()[:2000])))
        status = answer.status
        if status in (401, 403):
            raise RecommendationsFailure("unauthorized", f"the Recommendations API refused the key ({status})")
        if status == 404:
            raise RecommendationsFailure("not_found", "the Recommendations API answered 404 (no such module or account)")
        if status >= 500:
            raise RecommendationsFailure("server_error", f"the Recommendations API answered {status}")
        if status != 200:
            raise RecommendationsFailure("refused", f"the Recommendations API answered {status}")
        try:
            return parse_recommendations(answer.body, split_variants=split_variants)
        except UnreadableAnswer as exc:
            raise RecommendationsFailure("bad_answer", str(exc)) from None

    def _redacted(self, text: str) -> str:
        key = self._api_key.reveal()
        return text.replace(key, "[redacted]").replace(quote(key, safe=""), "[redacted]")

    def close(self) -> None:
        self._http.close()
