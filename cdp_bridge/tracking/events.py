"""Raptor's event types, one row each: what an event derives from its fields (a buy's
subtotal) and which of its parameters are sent even when empty (a basket's content).

Every path that makes an event (the helpers, ``cdp.track``, hybrid's ``POST /cdp/track``)
asks :func:`event_type` for its row, so adding an event type is one row here, plus its
tests and docs. Types named in ``CDP_TRACKING_PARAMETERS`` are known too, with no rule
of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..constants import DEFAULT_TRACKING_PARAMETERS
from ..errors import TrackingArgumentError
from .fields import event_parameters, parameter_positions, subtotal_of


@dataclass(frozen=True)
class EventType:
    """One of Raptor's event types, as cdp_bridge sends it."""

    name: str
    #: Fields sent even when empty: an empty basket is a fact worth sending.
    keep_empty: frozenset[str] = frozenset()
    #: ``subtotal`` is price × quantity unless given (SPEC section 5).
    derives_subtotal: bool = False
    #: Revenue: the sender's own lane, never dropped for other events, and the buy outbox.
    is_revenue: bool = False

    def parameters(self, fields: Mapping[str, Any], overrides: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
        """The event's ``pN`` parameters from its fields; a buy's subtotal from the price and
        quantity already checked and formatted, unless it is given."""
        params = event_parameters(self.name, fields, overrides)
        if self.derives_subtotal and fields.get("subtotal") is None:
            positions = parameter_positions(self.name, overrides)
            price, quantity = params.get(positions["price"]), params.get(positions["quantity"])
            if price is not None and quantity is not None:
                params[positions["subtotal"]] = subtotal_of(price, quantity)
        return params

    def kept_empty(self, overrides: Mapping[str, Mapping[str, str]]) -> frozenset[str]:
        """The p-numbers of :attr:`keep_empty`, where this account puts them."""
        moved = overrides.get(self.name, {})
        return frozenset(moved.get(keyword, DEFAULT_TRACKING_PARAMETERS[keyword]) for keyword in self.keep_empty)


#: Every type of Raptor's "Tracking Events & Parameters Reference" (Visit, Basket, Buy,
#: Favorite, ContentVisit, Search, SearchClick, SearchResult, ItemClick, and the automatic
#: PageView), plus wishlist, campaign and setuser.
EVENT_TYPES: dict[str, EventType] = {row.name: row for row in (
    EventType("visit"),
    EventType("buy", derives_subtotal=True, is_revenue=True),
    EventType("basket", keep_empty=frozenset({"basket_content"})),
    EventType("favorite"),
    EventType("contentvisit"),
    EventType("pageview"),
    EventType("search"),
    EventType("searchclick"),
    EventType("searchresult"),
    EventType("itemclick"),
    EventType("wishlist"),
    EventType("campaign"),
    # Raptor's "set email marketing id": the visitor's email goes as ruid (the user id).
    EventType("setuser"),
)}


def event_type(name: object, overrides: Mapping[str, Mapping[str, str]]) -> EventType:
    """The row of ``name``, or :class:`TrackingArgumentError` naming the known types."""
    if isinstance(name, str):
        known = EVENT_TYPES.get(name)
        if known is not None:
            return known
        if name in overrides:
            return EventType(name)
    names = ", ".join(sorted(EVENT_TYPES.keys() | set(overrides)))
    raise TrackingArgumentError(f"event_type {name!r} is not a known event type ({names})")
