"""Raptor's CDP API, asked for the truth: ``GET {url}/api/v3/audiences`` and
``GET {url}/api/v3/membership/{audienceId}``, with the headers of visitor segments
(``X-ACTIVATION-ID``, ``X-API-KEY``; SPEC section 9), through the shared outbound client:
no redirects, a deadline for each call, at most ``CDP_RECONCILE_MAX_BYTES`` of answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

from ..errors import CDPError
from ..json_text import UnreadableJSON, read_json
from ..outbound import Answer, CallFailure, OutboundClient, StreamedAnswer
from ..secret import Secret
from .answers import Audience, UnreadableAnswer, read_audiences

AUDIENCES_PATH = "/api/v3/audiences"
MEMBERSHIP_PATH = "/api/v3/membership/"
#: The deadline of one call: a million members take a while to send.
TIMEOUT_SECONDS = 600.0


class ReconcileFailure(CDPError):
    """The CDP API gave no usable answer; the message says what (never the key)."""


class CdpApiClient:
    """The two calls of a reconcile."""

    def __init__(self, base_url: str, activation_id: str, api_key: Secret, max_bytes: int,
                 timeout: float = TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"X-ACTIVATION-ID": activation_id, "X-API-KEY": api_key.reveal(), "Accept": "application/json"}
        self._http = OutboundClient(timeout=timeout, max_answer_bytes=max_bytes, pool_size=2)

    def audiences(self) -> list[Audience]:
        answer = self._http.request("GET", self.base_url + AUDIENCES_PATH, headers=self._headers)
        if not isinstance(answer, Answer):
            raise ReconcileFailure(f"the audiences: {answer.detail}")
        _check_status(answer.status, "the audiences")
        document = read_json(answer.body)
        if isinstance(document, UnreadableJSON):
            raise ReconcileFailure(f"the audiences: the answer is not JSON ({document.detail})")
        try:
            return read_audiences(document)
        except UnreadableAnswer as exc:
            raise ReconcileFailure(f"the audiences: {exc}") from None

    @contextmanager
    def members(self, audience_id: str) -> Iterator[StreamedAnswer]:
        """The answer of one audience's members, to be read as a stream."""
        url = self.base_url + MEMBERSHIP_PATH + quote(audience_id, safe="")
        with self._http.streamed(url, headers=self._headers) as answer:
            if isinstance(answer, CallFailure):
                raise ReconcileFailure(f"its members: {answer.detail}")
            _check_status(answer.status, "its members")
            yield answer

    def close(self) -> None:
        self._http.close()


def _check_status(status: int, what: str) -> None:
    if status == 404:
        raise ReconcileFailure(f"{what}: the CDP API answered 404 (not found)")
    if status in (401, 403):
        raise ReconcileFailure(f"{what}: the CDP API refused the credentials ({status})")
    if status != 200:
        raise ReconcileFailure(f"{what}: the CDP API answered {status}")
