"""The segment store: ``cdp_*`` tables, set-based membership writes and look-ups."""

from .segments import RecentUserSegments, Segment, SegmentGroup, SegmentStore, UserSegments, validate_user_ids
from .tables import CDPTables, define_tables, utcnow

__all__ = [
    "CDPTables",
    "RecentUserSegments",
    "Segment",
    "SegmentGroup",
    "SegmentStore",
    "UserSegments",
    "define_tables",
    "utcnow",
    "validate_user_ids",
]
