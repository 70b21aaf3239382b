"""Raptor's CDP API, asked for one visitor's audience memberships (SPEC section 9).

``GET {CDP_MEMBERSHIP_API_URL}/api/v3/memberships/coid?identifierValue=<visitor id>``
with ``X-ACTIVATION-ID`` and ``X-API-KEY``. One pooled :class:`requests.Session` per app
and no retries: the call is made while a page waits, so a failure is reported at once
(as :class:`MembershipFailure`) and the page goes on without segments.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ..errors import first_line
from ..log_text import one_line
from ..secret import Secret

log = logging.getLogger("cdp_bridge.membership")

MEMBERSHIPS_PATH = "/api/v3/memberships/coid"
#: The largest answer read; a visitor is in a few audiences, not in megabytes of them.
MAX_ANSWER_BYTES = 1024 * 1024
#: Connections kept per app process: one per web thread is plenty.
POOL_SIZE = 32


@dataclass(frozen=True)
class Membership:
    """One audience a visitor is in, as the CDP API names it."""

    id: str
    name: str


class MembershipFailure(Exception):
    """The CDP API gave no usable answer; ``reason`` says which kind of failure."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class MembershipClient:
    """Asks the CDP API which audiences a visitor is in."""

    def __init__(self, base_url: str, activation_id: str, api_key: Secret, timeout: float) -> None:
        self.url = base_url.rstrip("/") + MEMBERSHIPS_PATH
        self.activation_id = activation_id
        self._api_key = api_key
        self.timeout = timeout
        self.session = requests.Session()
        self.session.mount(base_url, HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0))

    def memberships(self, visitor_id: str) -> tuple[Membership, ...]:
        """The visitor's memberships.

        Raises :class:`MembershipFailure` on a timeout, a connection error, a 404
        (``not_found``: a visitor the CDP does not know, or a wrong URL), a refusal
        (401/403 ``unauthorized``, other 4xx ``refused``), a 5xx or an unreadable answer.
        """
        headers = {"X-ACTIVATION-ID": self.activation_id, "X-API-KEY": self._api_key.reveal(), "Accept": "application/json"}
        try:
            with self.session.get(self.url, params={"identifierValue": visitor_id}, headers=headers,
                                  timeout=self.timeout, stream=True) as response:
                body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
        except requests.Timeout:
            raise MembershipFailure("timeout", f"no answer within {self.timeout:g} s") from None
        except (requests.RequestException, OSError) as exc:
            raise MembershipFailure("connection", first_line(exc)) from None
        text = body[:MAX_ANSWER_BYTES].decode("utf-8", "replace")
        log.debug("GET %s?identifierValue=%s (X-ACTIVATION-ID %s, X-API-KEY [redacted]) answered %s: %s",
                  self.url, visitor_id, self.activation_id, response.status_code,
                  one_line(text.replace(self._api_key.reveal(), "[redacted]")))
        status = response.status_code
        if status == 404:
            raise MembershipFailure("not_found", "the CDP API answered 404 (a visitor it does not know)")
        if status in (401, 403):
            raise MembershipFailure("unauthorized", f"the CDP API refused the credentials ({status})")
        if status >= 500:
            raise MembershipFailure("server_error", f"the CDP API answered {status}")
        if status != 200:
            raise MembershipFailure("refused", f"the CDP API answered {status}")
        if len(body) > MAX_ANSWER_BYTES:
            raise MembershipFailure("bad_answer", f"the answer is larger than {MAX_ANSWER_BYTES} bytes")
        return parse_memberships(text)

    def close(self) -> None:
        self.session.close()


def parse_memberships(text: str) -> tuple[Membership, ...]:
    """``{"memberships": [{"id", "name"}, …]}``, read tolerantly: unknown keys are ignored,
    an entry without a usable id is skipped, a missing name is the id."""
    try:
        answer: Any = json.loads(text)
    except ValueError as exc:
        raise MembershipFailure("bad_answer", f"the answer is not JSON ({first_line(exc)})") from None
    if not isinstance(answer, dict):
        raise MembershipFailure("bad_answer", "the answer is not a JSON object")
    entries = answer.get("memberships") or []
    if not isinstance(entries, list):
        raise MembershipFailure("bad_answer", "memberships is not a list")
    found: dict[str, Membership] = {}
    for entry in entries:
        membership = _membership(entry)
        if membership is not None:
            found.setdefault(membership.id, membership)
    return tuple(found.values())


def _membership(entry: Any) -> Membership | None:
    if not isinstance(entry, dict):
        return None
    identifier = entry.get("id")
    if isinstance(identifier, bool) or not isinstance(identifier, (str, int)) or not str(identifier).strip():
        return None
    name = entry.get("name")
    identifier = str(identifier).strip()
    return Membership(identifier, name.strip() if isinstance(name, str) and name.strip() else identifier)
