"""What the demo registers with cdp_bridge: who is logged in, who may see the back office,
the export's sources and processor, and the recommendation loader."""

from __future__ import annotations

import hmac
from datetime import date
from typing import Any

from flask import Response, abort, current_app, request
from sqlalchemy import select

from .extensions import cdp, db
from .models import CURRENCY, PRODUCTS, DemoUser
from .shop import signed_in_user


@cdp.user_id_loader
def logged_in_user_id() -> int | None:
    """Tells cdp_bridge's tracking and personalisation helpers who is logged in."""
    user = signed_in_user()
    return user.id if user else None


@cdp.admin_guard
def admins_only() -> bool:
    """The back office at /cdp/admin/ admits the demo's admin user (alice); on a site's own
    database, whoever gives SHOP_ADMIN_PASSWORD by HTTP Basic (user ``admin``), else nobody."""
    if current_app.config["SHOP_DEMO"]:
        user = signed_in_user()
        return bool(user and user.is_admin)
    password = current_app.config["SHOP_ADMIN_PASSWORD"]
    if not password:
        return False
    given = request.authorization
    if given and given.type == "basic" and given.username == "admin" \
            and hmac.compare_digest((given.password or "").encode(), password.encode()):
        return True
    abort(Response("The back office needs the admin password.", 401, {"WWW-Authenticate": 'Basic realm="back office"'}))


@cdp.user_source
def demo_users() -> Any:
    """The shop's users, for flask cdp stream-user-data: the model's columns as rows on the
    session's connection, read in chunks (no object and no ORM result per user; see
    docs/export.md)."""
    query = select(DemoUser.id, DemoUser.login, DemoUser.email, DemoUser.name, DemoUser.is_admin)
    yield from db.session.connection().execute(query.order_by(DemoUser.id).execution_options(yield_per=1000))


@cdp.product_source("pet_supplies")
def demo_products() -> Any:
    """The catalogue, for flask cdp stream-product-data."""
    for product in PRODUCTS.values():
        yield {**product, "currency": CURRENCY, "url": f"/products/{product['id']}"}


#: The shop's guides, as content for flask cdp stream-content-data.
ARTICLES = [
    {"id": "guide-cat-tree", "name": "Choosing a cat tree", "category_path": [("guides", "Guides"), ("cats", "Cats")],
     "published_at": date(2026, 3, 1)},
    {"id": "guide-aquarium", "name": "Your first aquarium", "category_path": [("guides", "Guides"), ("fish", "Fish")],
     "published_at": date(2026, 5, 12)},
]


@cdp.content_source("article")
def demo_articles() -> Any:
    """The shop's guides, for flask cdp stream-content-data."""
    for article in ARTICLES:
        yield {**article, "url": f"/guides/{article['id']}"}


@cdp.recommendation_loader("product")
def recommended_products(ids: list[str]) -> dict[str, dict[str, Any]]:
    """The catalogue's products for recommended ids (ids the shop no longer sells are skipped)."""
    return {product_id: PRODUCTS[product_id] for product_id in ids if product_id in PRODUCTS}


@cdp.user_item_processor(priority=10)
def add_admin_flag(item: dict[str, Any], user: Any) -> dict[str, Any]:
    """An example processor: one more column for the Data Manager."""
    item["is_admin"] = bool(user.is_admin)  # the row the source yielded: columns by name
    return item
