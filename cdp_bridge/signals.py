"""Signals a host connects to, to react to what cdp_bridge changed (SPEC section 15).

They are blinker signals, as Flask's own (``flask.signals``)::

    from cdp_bridge.signals import memberships_changed

    @memberships_changed.connect
    def welcome_vips(app, group, segment, added, removed, source):
        if segment == "vip":
            queue_welcome_mails(added)

- ``memberships_changed``: ``group`` and ``segment`` (identifiers), ``added`` and
  ``removed`` (the user ids whose membership changed: an ``add`` of a member already
  there changes nothing and is not among them), ``source`` (``webhook``, ``reconcile``,
  ``forget`` or ``admin``). One per segment that changed.
- ``person_forgotten``: ``request_id`` (the erasure request's id, see :mod:`.privacy`).
- ``delivery_failed``: ``delivery_id`` and ``reason``, when a queued delivery is given up.

Each is sent after the change has committed, in the process that made it (a queued
delivery's, in the worker that applied it), with the app as sender. A receiver that raises
is logged with its name and the other receivers still run: the change stays as it was
committed, and it is not made or sent again.
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal
from flask import current_app, has_app_context

log = logging.getLogger("cdp_bridge.signals")

_signals = Namespace()

memberships_changed = _signals.signal("cdp-memberships-changed")
person_forgotten = _signals.signal("cdp-person-forgotten")
delivery_failed = _signals.signal("cdp-delivery-failed")

#: The sources of a membership change, as ``memberships_changed`` names them.
SOURCES = ("webhook", "reconcile", "forget", "admin")


def send(signal: Signal, **arguments: Any) -> None:
    """Send ``signal`` from the current app to each receiver in turn; a receiver that
    raises is logged (with its name and the signal's) and the next one still runs."""
    if not signal.receivers:
        return
    sender: Any = current_app._get_current_object() if has_app_context() else None  # type: ignore[attr-defined]
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **arguments)
        except Exception:  # noqa: BLE001 - a host's receiver: logged, never undoes the change
            log.exception("receiver %s of %s raised; the change stays as committed", _name_of(receiver),
                          getattr(signal, "name", "a signal"))


def _name_of(receiver: Any) -> str:
    module = getattr(receiver, "__module__", None)
    name = getattr(receiver, "__qualname__", None) or repr(receiver)
    return f"{module}.{name}" if module else name
