"""Segments of visitors who have not logged in, from Raptor's CDP API (SPEC section 9)."""

from __future__ import annotations

from collections.abc import Sequence

from ..store import Segment, UserSegments, segments_of
from .client import Membership, MembershipClient, MembershipFailure
from .service import SegmentsCache, VisitorSegmentsService

__all__ = [
    "Membership",
    "MembershipClient",
    "MembershipFailure",
    "SegmentsCache",
    "VisitorSegmentsService",
    "as_segments",
]


def as_segments(memberships: Sequence[Membership]) -> UserSegments:
    """Memberships as the store's segments answer checks: by audience id or by name. A
    visitor's audiences belong to no segment group, so ``"group/segment"`` never matches."""
    return segments_of([Segment(m.id, m.name, "", None, (), None, None, None) for m in memberships])
