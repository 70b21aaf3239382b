"""Testing a site that uses cdp_bridge (SPEC section 16): a local stand-in for Raptor's
servers, and a pytest plugin (``pytest11`` entry point ``cdp_bridge``) with its fixtures,
``cdp_raptor`` and ``cdp_send_activation``. See docs/testing-your-site.md."""

from .activation import send_activation
from .stand_in import RaptorStandIn

__all__ = ["RaptorStandIn", "send_activation"]
