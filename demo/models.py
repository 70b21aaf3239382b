"""The demo shop's data: its users, the visitors its stand-in for Raptor remembers, its
products, articles and recommendation modules."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import db

DEMO_CLIENT_ID = "demo-shop"
DEMO_MEMBERSHIP_ACTIVATION_ID = "demo-cdp-api"
CAT_OWNERS = {"id": "5d822e81", "name": "Cat owners"}
DEMO_GROUP = "demo_shop"
#: What the demo's stand-in for Raptor's CDP API holds as the activation's audiences:
#: ``{audience id: (name, [user ids])}`` (carol owns a cat; alice and carol spend big).
DEMO_AUDIENCES: dict[str, tuple[str, list[str]]] = {
    CAT_OWNERS["id"]: (CAT_OWNERS["name"], ["3"]),
    "9a1f0c37": ("Big spenders", ["1", "3"]),
}
#: What the demo's store holds on its first run: the CDP's push before last, as if the
#: site had missed the last one (carol became a big spender), so ``flask cdp reconcile``
#: has a drift to repair (docs/demo.md). Bob is in no segment: the demo page's tip sends
#: him an activation.
DEMO_MISSED_PUSH: dict[str, list[str]] = {CAT_OWNERS["id"]: ["3"], "9a1f0c37": ["1"]}
INTERESTS_GROUP = "demo_interests"


class DemoUser(db.Model):  # type: ignore[name-defined,misc]
    """A shop customer; its id is the user id the CDP knows."""

    __tablename__ = "demo_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)


class DemoCatVisitor(db.Model):  # type: ignore[name-defined,misc]
    """A visitor the demo's Raptor stand-in saw look at a cat product: in "Cat owners"."""

    __tablename__ = "demo_cat_visitors"
    visitor_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class DemoView(db.Model):  # type: ignore[name-defined,misc]
    """A product a visitor looked at, as the demo's Raptor stand-in saw it: its item history."""

    __tablename__ = "demo_views"
    id: Mapped[int] = mapped_column(primary_key=True)
    visitor_id: Mapped[str] = mapped_column(String(36), index=True)
    product_id: Mapped[str] = mapped_column(String(64))


DEMO_USERS = [
    {"id": 1, "login": "alice", "email": "alice@example.com", "name": "Alice Example", "is_admin": True},
    {"id": 2, "login": "bob", "email": "bob@example.com", "name": "Bob Example", "is_admin": False},
    {"id": 3, "login": "carol", "email": "carol@example.com", "name": "Carol Example", "is_admin": False},
]

PRODUCTS: dict[str, dict[str, Any]] = {
    p["id"]: p
    for p in [
        {"id": "cat-tree", "name": "Cat tree \"Skyscraper\"", "price": Decimal("89.90"), "brand": "Purrfect",
         "category_path": [("pets", "Pets"), ("cats", "Cats")], "in_stock": True},
        {"id": "cat-food", "name": "Salmon cat food, 2 kg", "price": Decimal("14.50"), "brand": "Purrfect",
         "category_path": [("pets", "Pets"), ("cats", "Cats")], "in_stock": True},
        {"id": "dog-leash", "name": "Reflective dog leash", "price": Decimal("19.00"), "brand": "Woofer",
         "category_path": [("pets", "Pets"), ("dogs", "Dogs")], "in_stock": True},
        {"id": "aquarium", "name": "Aquarium starter kit", "price": Decimal("129.00"), "brand": "BlueReef",
         "category_path": [("pets", "Pets"), ("fish", "Fish")], "in_stock": False},
    ]
}
CURRENCY = "EUR"
#: The demo's recommendation blocks: "others also viewed" on a product page, picks for the
#: visitor on the landing page, and the visitor's item history in the basket.
DEMO_RECOMMENDATION_MODULES = {
    "also_viewed": {"method": "GetSimilarItemsWeb", "kind": "product", "count": 3, "parameters": {"itemId": "product_id"}},
    "for_you": {"method": "GetUserItemRecommendationsWeb", "kind": "product", "count": 3,
                "parameters": {"UserIdentifier": "visitor"}},
    "recently_viewed": {"method": "GetUserItemHistoryWeb", "kind": "product", "count": 4,
                        "parameters": {"UserIdentifier": "visitor"}},
    # Ibexa's "Other customers have also purchased" block (by product code). Raptor's public
    # pages do not name its method: an operator copies it from the module in Raptor's panel.
    "also_bought": {"method": "GetAlsoPurchasedItemsWeb", "kind": "product", "count": 3,
                    "parameters": {"itemId": "product_id"}},
}
CONSENT_COOKIE = "cdp_consent"
