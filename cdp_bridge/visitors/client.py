"""Raptor's CDP API, asked for one visitor's audience memberships (SPEC section 9).

``GET {CDP_MEMBERSHIP_API_URL}/api/v3/memberships/coid?identifierValue=<visitor id>``
with ``X-ACTIVATION-ID`` and ``X-API-KEY``, through the shared outbound client (a pool,
no redirects, a total deadline, at most ``CDP_MEMBERSHIP_MAX_BYTES`` of answer) and no
retries: the call is made while a page waits, so a failure is reported at once (as
:class:`MembershipFailure`) and the page goes on without segments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..api_calls import ApiFailure
from ..errors import ValidationError
from ..identifiers import validate_segment_identifier, validate_text_identifier
from ..json_text import UnreadableJSON, read_json
from ..log_text import one_line
from ..outbound import Answer, OutboundClient
from ..secret import Secret

log = logging.getLogger("cdp_bridge.membership")

MEMBERSHIPS_PATH = "/api/v3/memberships/coid"
#: Connections kept per app process: one per web thread is plenty.
POOL_SIZE = 32


@dataclass(frozen=True)
class Membership:
    """One audience a visitor is in, as the CDP API names it."""

    id: str
    name: str


class MembershipFailure(ApiFailure):
    """The CDP API gave no usable answer; ``reason`` says which kind of failure."""


class MembershipClient:
    """Asks the CDP API which audiences a visitor is in."""

    def __init__(self, base_url: str, activation_id: str, api_key: Secret, timeout: float, max_answer_bytes: int) -> None:
        self.url = base_url.rstrip("/") + MEMBERSHIPS_PATH
        self.activation_id = activation_id
        self._api_key = api_key
        self.timeout = timeout
        self._http = OutboundClient(timeout=timeout, max_answer_bytes=max_answer_bytes, pool_size=POOL_SIZE)

    def memberships(self, visitor_id: str) -> tuple[Membership, ...]:
        """The visitor's memberships.

        Raises :class:`MembershipFailure` on a timeout (the whole answer not read within
        the timeout), a connection error, a redirect (never followed: it would hand the
        key to the host it names), an answer over the size limit, a 404 (``not_found``: a
        visitor the CDP does not know, or a wrong URL), a refusal (401/403
        ``unauthorized``, other 4xx ``refused``), a 5xx or an unreadable answer.
        """
        headers = {"X-ACTIVATION-ID": self.activation_id, "X-API-KEY": self._api_key.reveal(), "Accept": "application/json"}
        answer = self._http.request("GET", self.url, headers=headers, fields={"identifierValue": visitor_id})
        if not isinstance(answer, Answer):
            log.debug("GET %s?identifierValue=%s (X-ACTIVATION-ID %s, X-API-KEY [redacted]) failed: %s",
                      self.url, visitor_id, self.activation_id, answer)
            raise MembershipFailure(answer.reason, answer.detail)
        if log.isEnabledFor(logging.DEBUG):  # the excerpt is made only for a log that shows it
            log.debug("GET %s?identifierValue=%s (X-ACTIVATION-ID %s, X-API-KEY [redacted]) answered %s: %s",
                      self.url, visitor_id, self.activation_id, answer.status,
                      one_line(answer.text().replace(self._api_key.reveal(), "[redacted]")))
        status = answer.status
        if status == 404:
            raise MembershipFailure("not_found", "the CDP API answered 404 (a visitor it does not know)")
        if status in (401, 403):
            raise MembershipFailure("unauthorized", f"the CDP API refused the credentials ({status})")
        if status >= 500:
            raise MembershipFailure("server_error", f"the CDP API answered {status}")
        if status != 200:
            raise MembershipFailure("refused", f"the CDP API answered {status}")
        return parse_memberships(answer.body)

    def close(self) -> None:
        self._http.close()


def parse_memberships(body: bytes | str) -> tuple[Membership, ...]:
    """``{"memberships": [{"id", "name"}, …]}``, read tolerantly: unknown keys are ignored,
    an entry without a usable id is skipped, a missing name is the id. An id or a name
    that is not acceptable text (see :func:`~cdp_bridge.identifiers.text_problem`) skips
    its entry, with one WARNING for the answer: what Raptor sends passes the same checks
    as what comes in through the webhook."""
    answer = read_json(body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body)
    if isinstance(answer, UnreadableJSON):
        raise MembershipFailure("bad_answer", f"the answer is not valid JSON: {answer.detail}")
    if not isinstance(answer, dict):
        raise MembershipFailure("bad_answer", "the answer is not a JSON object")
    entries = answer.get("memberships") or []
    if not isinstance(entries, list):
        raise MembershipFailure("bad_answer", "memberships is not a list")
    found: dict[str, Membership] = {}
    skipped: list[str] = []
    for entry in entries:
        try:
            membership = membership_from_entry(entry)
        except ValidationError as exc:
            skipped.append(str(exc))
            continue
        if membership is not None:
            found.setdefault(membership.id, membership)
    if skipped:
        log.warning("visitor segments: skipped %s entries of the CDP API's answer that are not acceptable text"
                    " (first: %s)", len(skipped), one_line(skipped[0]))
    return tuple(found.values())


def membership_from_entry(entry: object) -> Membership | None:
    """One entry as a :class:`Membership`; ``None`` for one without an id, and
    :class:`ValidationError` for one whose id or name is not acceptable text."""
    if not isinstance(entry, dict):
        return None
    identifier = entry.get("id")
    if isinstance(identifier, bool) or not isinstance(identifier, (str, int)) or not str(identifier).strip():
        return None
    identifier = validate_segment_identifier(str(identifier).strip())
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        return Membership(identifier, identifier)
    return Membership(identifier, validate_text_identifier(name.strip(), "segment name"))
