"""The segment store: ``cdp_*`` tables, set-based membership writes and look-ups."""

from ..model import Segment, SegmentGroup
from .segments import SegmentStore, validate_user_ids
from .tables import CDPTables, define_tables, utcnow
from .user_segments import NO_SEGMENTS, UserSegments, segments_of

__all__ = [
    "NO_SEGMENTS",
    "CDPTables",
    "Segment",
    "SegmentGroup",
    "SegmentStore",
    "UserSegments",
    "define_tables",
    "segments_of",
    "utcnow",
    "validate_user_ids",
]
