"""The current app's cdp_bridge state, for the request and CLI layers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app

from .constants import EXTENSION_KEY

if TYPE_CHECKING:
    from .extension import CDPState


def current_state() -> CDPState:
    """``app.extensions["cdp"]`` of the current app; a clear error if it is not registered."""
    try:  # the proxy resolved once: every attribute read through it costs a context lookup
        state: CDPState = current_app._get_current_object().extensions[EXTENSION_KEY]  # type: ignore[attr-defined]
    except KeyError:
        raise RuntimeError("cdp_bridge is not registered on the current app: call cdp.init_app(app)") from None
    return state
