"""The demo's stand-in for Raptor: cdp_bridge.testing's, answering from the demo's own
data (a visitor who looked at a cat product is in "Cat owners"; recommendations from the
catalogue and the visitor's views; the activation's audiences for ``flask cdp reconcile``),
started only by a process that calls Raptor."""

from __future__ import annotations

import uuid
from typing import Any

import click
from flask import Blueprint, Flask, abort, request
from sqlalchemy import select

from cdp_bridge.testing import RaptorStandIn

from .extensions import db
from .models import CAT_OWNERS, DEMO_AUDIENCES, PRODUCTS, DemoCatVisitor, DemoView

STAND_IN_COMMANDS = frozenset({"run", "check", "till-sale", "reconcile"})
#: Where the other commands' Raptor settings point: the discard port, so nothing leaves
#: the machine (and none of them calls it).
NOWHERE = "http://127.0.0.1:9"


def calls_raptor(reconciles_on_schedule: bool) -> bool:
    """Whether this process needs the stand-in for Raptor's servers: it serves the shop
    (gunicorn, ``flask run``, a test's app: no ``flask`` command, or ``run``), runs a
    command that calls Raptor, or is ``flask cdp worker`` with ``CDP_RECONCILE_SCHEDULE``
    set. ``flask cdp init-db``, ``segments`` and the rest start no server thread."""
    context = click.get_current_context(silent=True)
    if context is None or context.info_name in STAND_IN_COMMANDS:
        return True
    return context.info_name == "worker" and reconciles_on_schedule



# -- the demo's stand-in for Raptor ------------------------------------------------------
#
# static/raptor-demo.js stands in for Raptor's script: it sets the rsa visitor cookie and
# sends the page's events to /demo-raptor/events. A visit to a cat product puts the
# visitor in "Cat owners", which the stand-in for Raptor's CDP API then answers. The
# stand-in for Raptor's servers runs on a port of its own, so that cdp_bridge asks it over
# HTTP exactly as it would ask Raptor: the CDP API, and the tracking host that the server
# and hybrid tracking modes (CDP_TRACKING_MODE) send events to.

raptor_stand_in = Blueprint("raptor_stand_in", __name__, url_prefix="/demo-raptor")


@raptor_stand_in.post("/events")
def stand_in_events() -> Any:
    """The events the stand-in script sends: ``{"coid": "<rsa>", "events": [{event, params}, …]}``."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("events"), list) or len(body["events"]) > 100:
        abort(400, "expected {coid, events: [...]}")
    try:
        visitor_id = str(uuid.UUID(str(body.get("coid"))))
    except ValueError:
        abort(400, "coid must be the rsa cookie's UUID")
    if any(_is_cat_visit(event) for event in body["events"]):
        _remember_cat_visitor(visitor_id)
    _remember_views(visitor_id, body["events"])
    return "", 204


def _remember_cat_visitor(visitor_id: str) -> None:
    if db.session.get(DemoCatVisitor, visitor_id) is None:
        db.session.add(DemoCatVisitor(visitor_id=visitor_id))
        db.session.commit()


def _remember_views(visitor_id: str, events: list[Any]) -> None:
    """The products a visitor's visit events name, for the history module."""
    for event in events:
        params = event.get("params") if isinstance(event, dict) else None
        if isinstance(params, dict) and params.get("p1") == "visit" and params.get("p2") in PRODUCTS:
            db.session.add(DemoView(visitor_id=visitor_id, product_id=params["p2"]))
    db.session.commit()


def _stand_in_recommendations(method: str, args: Any) -> list[str] | None:
    """What the stand-in recommends for a module's method; ``None`` for a method it has not."""
    catalogue = list(PRODUCTS)
    if method == "GetSimilarItemsWeb":
        item = PRODUCTS.get(args.get("itemId", ""))
        if item is None:
            return catalogue
        same = [p for p in catalogue if p != item["id"] and PRODUCTS[p]["category_path"] == item["category_path"]]
        return same + [p for p in catalogue if p != item["id"] and p not in same]
    if method == "GetAlsoPurchasedItemsWeb":  # bought with it: what goes with it, from other shelves
        item = PRODUCTS.get(args.get("itemId", ""))
        return [p for p in catalogue if item is None or PRODUCTS[p]["category_path"] != item["category_path"]]
    visitor = args.get("UserIdentifier", "")
    if method == "GetUserItemRecommendationsWeb":
        cats = [p for p in catalogue if ("cats", "Cats") in PRODUCTS[p]["category_path"]]
        liked = cats if db.session.get(DemoCatVisitor, visitor) is not None else []
        return liked + [p for p in catalogue if p not in liked and PRODUCTS[p]["in_stock"]]
    if method == "GetUserItemHistoryWeb":
        views = db.session.scalars(select(DemoView.product_id).where(DemoView.visitor_id == visitor)
                                   .order_by(DemoView.id.desc()))
        return list(dict.fromkeys(views))
    return None


def _is_cat_visit(event: Any) -> bool:
    params = event.get("params") if isinstance(event, dict) else None
    return isinstance(params, dict) and params.get("p1") == "visit" and "cats#" in str(params.get("p4", ""))


def start_raptor_stand_in(app: Flask, settings: dict[str, Any]) -> str:
    """Serve cdp_bridge's stand-in for Raptor's servers (cdp_bridge.testing) on a loopback
    port of its own, answering from the demo's own data; return its URL."""
    stand_in = RaptorStandIn(membership_api_key=settings["CDP_MEMBERSHIP_API_KEY"],
                             activation_id=settings["CDP_MEMBERSHIP_ACTIVATION_ID"],
                             recommendations_api_key=settings["CDP_RECOMMENDATIONS_API_KEY"],
                             gdpr_api_key=settings["CDP_GDPR_API_KEY"])

    def visitor_segments(visitor_id: str) -> list[tuple[str, str]]:
        with app.app_context():
            known = db.session.get(DemoCatVisitor, visitor_id) is not None
        return [(CAT_OWNERS["id"], CAT_OWNERS["name"])] if known else []

    def recommendations(method: str, parameters: Any) -> list[str] | None:
        with app.app_context():
            return _stand_in_recommendations(method, parameters)

    def tracking_event(params: dict[str, str]) -> None:
        """Raptor's server-side tracking request: one event in the query string."""
        try:
            visitor_id = str(uuid.UUID(params.get("coid", "")))
        except ValueError:
            return
        event = {"params": params}
        with app.app_context():
            if _is_cat_visit(event):
                _remember_cat_visitor(visitor_id)
            _remember_views(visitor_id, [event])

    stand_in.audiences = {audience: (name, list(members)) for audience, (name, members) in DEMO_AUDIENCES.items()}
    stand_in.answer_visitor_segments = visitor_segments
    stand_in.answer_recommendations = recommendations
    stand_in.on_event = tracking_event
    app.extensions["demo_raptor_stand_in"] = stand_in
    return stand_in.url
