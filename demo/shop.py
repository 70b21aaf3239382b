"""The shop's pages and commands: landing, products, basket, checkout, order, login; and
``flask shop init-db`` and ``flask shop till-sale``."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import click
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from cdp_bridge import TrackingArgumentError

from .extensions import cdp, db
from .models import CURRENCY, DEMO_USERS, PRODUCTS, DemoUser

shop = Blueprint("shop", __name__)


def signed_in_user() -> DemoUser | None:
    """The logged-in demo user, if any (not named current_user: that is Flask-Login's)."""
    if "user" not in g:
        user_id = session.get("user_id")
        g.user = db.session.get(DemoUser, user_id) if user_id is not None else None
    return g.user


def _basket() -> dict[str, int]:
    basket: dict[str, int] = session.setdefault("basket", {})
    return basket


def order_lines(quantities: dict[str, int]) -> list[dict[str, Any]]:
    """Product id -> quantity as order lines: what the basket page shows and cdp_track_buy reads."""
    return [
        {**PRODUCTS[pid], "quantity": qty, "subtotal": PRODUCTS[pid]["price"] * qty}
        for pid, qty in quantities.items()
        if pid in PRODUCTS
    ]



@shop.app_context_processor
def shop_context() -> dict[str, Any]:
    return {
        "user": signed_in_user(),
        "basket_count": sum(_basket().values()),
        "currency": CURRENCY,
        "demo_logins": current_app.config["SHOP_DEMO"],
        # The blocks whose module is configured: a site's .env may configure none.
        "recommendation_blocks": current_app.extensions["cdp"].settings.recommendations_api.modules,
    }


@shop.get("/")
def landing() -> str:
    return render_template("landing.html", products=list(PRODUCTS.values()))


@shop.get("/products/<product_id>")
def product(product_id: str) -> str:
    item = PRODUCTS.get(product_id) or abort(404)
    return render_template("product.html", product=item)


@shop.get("/basket")
def basket() -> str:
    lines = order_lines(_basket())
    return render_template(
        "basket.html",
        lines=lines,
        total=sum((line["subtotal"] for line in lines), Decimal(0)),
        changed_product=session.pop("basket_changed", None),
    )


@shop.post("/basket")
def change_basket() -> Any:
    product_id = request.form.get("product_id", "")
    if product_id not in PRODUCTS:
        abort(400, "unknown product")
    try:
        quantity = int(request.form.get("quantity", "1"))
    except ValueError:
        abort(400, "quantity must be a whole number")
    items = _basket()
    items[product_id] = max(0, min(99, quantity if request.form.get("set") else items.get(product_id, 0) + quantity))
    if items[product_id] == 0:
        del items[product_id]
    session["basket_changed"] = product_id  # tracked as a basket event on the next page
    session.modified = True
    return redirect(url_for(".basket"))


@shop.post("/checkout")
def checkout() -> Any:
    lines = order_lines(_basket())
    if not lines:
        flash("Your basket is empty.")
        return redirect(url_for(".basket"))
    order = {
        "id": uuid.uuid4().hex[:10],
        "quantities": {line["id"]: line["quantity"] for line in lines},
    }
    session["last_order"] = order
    session["basket"] = {}
    return redirect(url_for(".order_confirmation"))


@shop.cli.command("init-db")
def init_db() -> None:
    """Create the shop's own tables (cdp_bridge's are ``flask cdp init-db``'s); safe to run again."""
    try:
        db.metadata.create_all(db.engine, tables=[t for t in db.metadata.sorted_tables if not t.name.startswith("cdp_")])
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database error: {str(exc).splitlines()[0]}") from None
    click.echo("The shop's tables are ready.")


@shop.cli.command("till-sale")
@click.option("--order", "order_id", required=True, help="The till's receipt number.")
@click.option("--email", required=True, help="The customer's email, as the loyalty card gives it.")
@click.option("--product", "products", multiple=True, required=True, help="A product id; repeat for more lines.")
def till_sale(order_id: str, email: str, products: tuple[str, ...]) -> None:
    """Send a sale made at the shop's till (no page saw it) to Raptor as offline buys."""
    unknown = [product for product in products if product not in PRODUCTS]
    if unknown:
        raise click.UsageError(f"unknown product(s): {', '.join(unknown)}; the shop sells {', '.join(PRODUCTS)}")
    lines = [{"id": product, "price": PRODUCTS[product]["price"], "quantity": products.count(product)}
             for product in dict.fromkeys(products)]
    try:
        sent = cdp.track_offline_buy(order_id, lines, email, currency=CURRENCY)
    except TrackingArgumentError as exc:
        raise click.UsageError(str(exc)) from None
    cdp.state.tracking.sender.stop(seconds=10)  # a command ends here: send what it queued first
    click.echo(f"Sent {sent} offline buy event(s) for receipt {order_id}.")


@shop.get("/order")
def order_confirmation() -> str:
    order = session.get("last_order") or abort(404)
    # The buy events go out once, on the page the checkout leads to; a refresh (or a
    # second look) must not count the order's revenue twice in the CDP.
    just_placed = not order.get("tracked")
    if just_placed:
        session["last_order"] = {**order, "tracked": True}
    return render_template("order.html", order=order, lines=order_lines(order["quantities"]), track=just_placed)


@shop.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if not current_app.config["SHOP_DEMO"]:
        abort(404)  # the demo's logins take no password: never on a site's own database
    if request.method == "POST":
        user = db.session.scalar(select(DemoUser).where(DemoUser.login == request.form.get("login", "")))
        if user is None:
            flash("Unknown demo user.")
            return render_template("login.html", users=DEMO_USERS), 400
        session["user_id"] = user.id
        return redirect(url_for(".landing"))
    return render_template("login.html", users=DEMO_USERS)


@shop.post("/logout")
def logout() -> Any:
    session.pop("user_id", None)
    return redirect(url_for(".landing"))


@shop.get("/account")
def account() -> Any:
    """The signed-in customer's account: the place to ask to be forgotten."""
    if signed_in_user() is None:
        return redirect(url_for(".login"))
    return render_template("account.html")


@shop.post("/account/forget")
def forget_me() -> Any:
    """Erase the customer here and at Raptor (SPEC section 14), sign them out, and expire
    the visitor's tracking cookies on the way out."""
    user = signed_in_user()
    if user is None:
        return redirect(url_for(".login"))
    receipt = cdp.forget(user_id=user.id, email=user.email)
    session.pop("user_id", None)
    session.pop("basket", None)
    raptor = "Raptor has been asked to delete you too." if receipt.deletions_queued else "Raptor was not asked."
    flash(f"You have been forgotten: {receipt.memberships_removed} segment membership(s) removed. {raptor}")
    return cdp.forget_visitor(redirect(url_for(".landing")))
