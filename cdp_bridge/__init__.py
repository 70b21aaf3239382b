"""cdp_bridge: make a Flask site an activation target of the Ibexa CDP (Raptor).

    from cdp_bridge import CDP
    cdp = CDP(app, db=db)
"""

from .database_url import database_url
from .errors import (
    CDPError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    PayloadError,
    ProtectedGroupError,
    RegistrationError,
    SignatureError,
    TrackingArgumentError,
    ValidationError,
)
from .extension import CDP
from .model import ActivationCredentials, ActivationDocument, AudienceChange, DeliveryStatus, Rejection, SegmentMetadata
from .reconcile.answers import MembershipList
from .settings import CDPSettings
from .state import CDPState
from .store import Segment, SegmentGroup, SegmentStore
from .store.schema import leave_cdp_tables_out
from .version import __version__

__all__ = [
    "__version__",
    "CDP",
    "ActivationCredentials",
    "ActivationDocument",
    "AudienceChange",
    "CDPError",
    "CDPSettings",
    "CDPState",
    "ConfigurationError",
    "ConflictError",
    "DeliveryStatus",
    "MembershipList",
    "NotFoundError",
    "PayloadError",
    "ProtectedGroupError",
    "RegistrationError",
    "Rejection",
    "Segment",
    "SegmentGroup",
    "SegmentMetadata",
    "SegmentStore",
    "SignatureError",
    "TrackingArgumentError",
    "ValidationError",
    "database_url",
    "leave_cdp_tables_out",
]
