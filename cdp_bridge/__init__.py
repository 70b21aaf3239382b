"""cdp_bridge: make a Flask site an activation target of the Ibexa CDP (Raptor).

    from cdp_bridge import CDP
    cdp = CDP(app, db=db)
"""

from .errors import (
    CDPError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    ProtectedGroupError,
    ValidationError,
)
from .extension import CDP, CDPState
from .settings import ActivationCredentials, CDPSettings
from .store import Segment, SegmentGroup, SegmentStore

__all__ = [
    "CDP",
    "ActivationCredentials",
    "CDPError",
    "CDPSettings",
    "CDPState",
    "ConfigurationError",
    "ConflictError",
    "NotFoundError",
    "ProtectedGroupError",
    "Segment",
    "SegmentGroup",
    "SegmentStore",
    "ValidationError",
]
