"""Plain value types that cross cdp_bridge's layers: what a delivery asks for, what was
refused, what the CDP says about an audience, who an activation is, and the statuses a
delivery goes through.

Nothing here knows about HTTP, Flask or SQL: the webhook's body formats produce these
values, the store applies them, and the delivery log records them.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Protocol

from .secret import Secret


class HeaderLookup(Protocol):
    """Request headers as the webhook's parts read them: Werkzeug's (case-insensitive),
    or a plain mapping."""

    def get(self, key: str, /) -> str | None: ...


@dataclass(frozen=True)
class Clock:
    """How cdp_bridge waits: the export's backoff between retries. Tests pass one that
    records the waits instead of sleeping (``CDP(clock=Clock(sleep=waits.append))``)."""

    sleep: Callable[[float], None] = time.sleep


class TrackingMode(enum.StrEnum):
    """Where tracking events go (``CDP_TRACKING_MODE``, SPEC section 10)."""

    #: Raptor's script in the browser sends them.
    CLIENT = "client"
    #: The site's server sends them; the helpers render no script.
    SERVER = "server"
    #: The browser posts them to the site's ``POST /cdp/track``, which forwards them.
    HYBRID = "hybrid"


class TrackWithoutConsent(enum.StrEnum):
    """What is tracked of a visitor who has not consented (``CDP_TRACK_WITHOUT_CONSENT``)."""

    NONE = "none"
    COOKIELESS = "cookieless"


class DeliveryStatus(enum.StrEnum):
    """Where a recorded delivery stands (``cdp_deliveries.status``)."""

    APPLIED = "applied"
    QUEUED = "queued"
    PROCESSING = "processing"
    FAILED = "failed"
    #: The activation's segment group did not exist; replayable once it does.
    REJECTED = "rejected"


#: Statuses from which ``flask cdp replay`` and the back office queue a delivery again.
REPLAYABLE = (DeliveryStatus.FAILED, DeliveryStatus.REJECTED)


class Outcome(enum.StrEnum):
    """What receiving or processing one delivery came to (the webhook's answer, a worker's log)."""

    APPLIED = "applied"
    QUEUED = "queued"
    DUPLICATE = "duplicate"
    SEGMENT_GROUP_MISMATCH = "segment_group_mismatch"
    UNKNOWN_SEGMENT_GROUP = "unknown_segment_group"
    FAILED = "failed"
    #: Another worker took the delivery over; this one did not apply it.
    LEASE_LOST = "lease_lost"


@dataclass(frozen=True)
class ActivationCredentials:
    """One CDP activation: the client id and secret it presents, and its segment group."""

    client_id: str
    client_secret: Secret = field(repr=False)
    segment_group_identifier: str


@dataclass(frozen=True)
class ScheduledExport:
    """One entry of CDP_EXPORT_SCHEDULE: a cron interval and the command's options."""

    interval: str
    options: str


@dataclass(frozen=True)
class SegmentMetadata:
    """What the CDP says about an audience besides its members."""

    name: str | None = None
    description: str | None = None
    tags: tuple[str, ...] | None = None
    profile_count: int | None = None
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class AudienceChange:
    """One audience's change: membership edits, metadata, deletion, ordering."""

    audience_id: str
    metadata: SegmentMetadata = field(default_factory=SegmentMetadata)
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    members: tuple[str, ...] | None = None
    deleted: bool = False
    sequence: int | None = None


@dataclass(frozen=True)
class Rejection:
    """An audience, or one user id of it, that was refused, and why."""

    audience: str
    reason: str
    user_id: str | None = None

    def as_dict(self) -> dict[str, str]:
        answer = {"audience": self.audience, "reason": self.reason}
        if self.user_id is not None:
            answer["user_id"] = self.user_id
        return answer


#: How many rejections a delivery keeps one by one; beyond them only counts per reason.
REJECTION_SAMPLE_SIZE = 100


class Rejections:
    """What a delivery refused, kept bounded: the first ``REJECTION_SAMPLE_SIZE``
    rejections, and a count per reason of all of them.

    A body of a million bad ids must cost no more to answer, record and show than a
    body of a million good ones, so the full list is never built.
    """

    __slots__ = ("by_reason", "sample", "total")

    def __init__(self) -> None:
        self.sample: list[Rejection] = []
        self.by_reason: dict[str, int] = {}
        self.total = 0

    def add(self, rejection: Rejection) -> None:
        self.total += 1
        self.by_reason[rejection.reason] = self.by_reason.get(rejection.reason, 0) + 1
        if len(self.sample) < REJECTION_SAMPLE_SIZE:
            self.sample.append(rejection)

    def count(self, reason: str) -> None:
        """Count a rejection that the full sample has no room for, without building it."""
        self.total += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1

    @property
    def sampling(self) -> bool:
        """Whether the next rejection still goes into the sample."""
        return len(self.sample) < REJECTION_SAMPLE_SIZE

    def __len__(self) -> int:
        return self.total

    def sample_dicts(self) -> list[dict[str, str]]:
        return [r.as_dict() for r in self.sample]

    def as_record(self) -> dict[str, Any]:
        """The form kept in the delivery log (``cdp_deliveries.rejected``)."""
        return {"sample": self.sample_dicts(), "by_reason": dict(self.by_reason)}

    @classmethod
    def from_record(cls, value: object) -> Rejections:
        """The inverse of :meth:`as_record`; also reads 0.1's plain list of rejections."""
        rejections = cls()
        if isinstance(value, dict):
            sample, by_reason = value.get("sample") or [], value.get("by_reason") or {}
        else:
            sample, by_reason = value or [], None
        for item in sample:
            rejections.add(Rejection(item.get("audience", ""), item.get("reason", ""), item.get("user_id")))
        if by_reason is not None:
            rejections.by_reason = {str(reason): int(count) for reason, count in by_reason.items()}
            rejections.total = sum(rejections.by_reason.values())
        return rejections


@dataclass(frozen=True)
class ActivationDocument:
    """A parsed delivery body: what to apply, what was refused, how many ids it held."""

    changes: tuple[AudienceChange, ...]
    rejected: Rejections = field(default_factory=Rejections)
    items: int = 0
    segment_group_identifier: str | None = None
    request_id: str | None = None


@dataclass
class ApplyOutcome:
    """How many audiences were applied and how many were skipped as stale."""

    applied: int = 0
    stale: int = 0


@dataclass(frozen=True)
class SegmentGroup:
    """A segment group as stored, with whether an activation protects it."""

    identifier: str
    name: str
    protected: bool
    segment_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Segment:
    """A segment (a CDP audience) with its metadata."""

    identifier: str
    name: str
    group: str
    description: str | None
    tags: tuple[str, ...]
    profile_count: int | None
    source_updated_at: datetime | None
    last_sequence: int | None
    member_count: int | None = None


#: Where a recommendation module's query parameter takes its value (SPEC section 11).
RECOMMENDATION_SOURCES = ("visitor", "user", "product_id", "content_id", "category")


@dataclass(frozen=True)
class RecommendationModule:
    """One web module of Raptor's control panel, as ``CDP_RECOMMENDATION_MODULES`` names it."""

    name: str
    #: The API method, e.g. ``GetUserRecommendations``.
    method: str
    #: The kind of record its ids are (``product``, ``content``…): which loader turns them into the site's records.
    kind: str
    count: int
    #: Query parameter name → one of :data:`RECOMMENDATION_SOURCES`.
    parameters: Mapping[str, str]

    @property
    def splits_variants(self) -> bool:
        """Whether its ids may end in ``_<variant>``: a product's variants are one item."""
        return self.kind == "product"

    @cached_property
    def needs(self) -> frozenset[str]:
        """The sources its parameters read (asked on every block a page renders)."""
        return frozenset(self.parameters.values())

    @cached_property
    def reads_viewer(self) -> bool:
        """Whether its query names the visitor or the user (else the page's arguments alone make it)."""
        return not self.needs.isdisjoint(("visitor", "user"))
