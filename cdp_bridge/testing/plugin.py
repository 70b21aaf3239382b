"""cdp_bridge's pytest plugin (SPEC section 16), registered through the ``pytest11`` entry
point as ``cdp_bridge``: installing cdp_bridge makes its fixtures available to a site's
tests, and ``-p no:cdp_bridge`` turns them off.

- ``cdp_raptor``: a :class:`~cdp_bridge.testing.RaptorStandIn` for the test, closed after it.
  Give the app ``cdp_raptor.config`` (plus its own account and activation).
- ``cdp_send_activation(app, audiences, request_id=None)``: posts a delivery to the app's
  webhook with its own credentials, as the CDP would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .activation import send_activation
from .stand_in import RaptorStandIn


@pytest.fixture
def cdp_raptor() -> Iterator[RaptorStandIn]:
    """A local stand-in for Raptor's servers, for this test."""
    with RaptorStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def cdp_send_activation() -> Callable[..., Any]:
    """``cdp_send_activation(app, audiences, request_id=None)``: the app's answer to the delivery."""
    return send_activation
