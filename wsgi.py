"""The demo shop: a small Flask site with cdp_bridge registered on its own database.

    flask --app wsgi run                           # development server, embedded SQLite
    gunicorn -c gunicorn.conf.py 'wsgi:create_app()'  # production-style

It has a landing page, product pages, a basket and checkout, and a login with a few
demo users; pages show the logged-in user's segments. On first run it creates its
SQLite database in the instance folder, the demo users, the activation's segment group
(``demo_shop``, filled by the CDP's webhook) and a hand-made group (``demo_interests``).
The activation's client secret is generated on first run and kept in the instance
folder, never in the repository.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from decimal import Decimal
from typing import Any

import click
from flask import Blueprint, Flask, Response, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import String, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column
from werkzeug.middleware.proxy_fix import ProxyFix

from cdp_bridge import CDP, ConfigurationError, ConflictError, TrackingArgumentError, database_url
from cdp_bridge.settings import process_environment, secret_problem
from cdp_bridge.testing import RaptorStandIn

DEMO_CLIENT_ID = "demo-shop"
DEMO_MEMBERSHIP_ACTIVATION_ID = "demo-cdp-api"
CAT_OWNERS = {"id": "5d822e81", "name": "Cat owners"}
DEMO_GROUP = "demo_shop"
INTERESTS_GROUP = "demo_interests"

db = SQLAlchemy()
cdp = CDP()
shop = Blueprint("shop", __name__)


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
}
CONSENT_COOKIE = "cdp_consent"


def create_app(config: dict[str, Any] | None = None, instance_path: str | None = None) -> Flask:
    """Build the shop: the demo by default; a site configured by the environment (or a
    ``.env`` file) when that sets ``SQLALCHEMY_DATABASE_URI``. ``config`` overrides any
    setting (tests use it).

    The demo: embedded SQLite, demo users with passwordless logins, a made-up account
    number and a local stand-in for Raptor's script; every setting the environment gives
    wins over its default. The site: the environment's database and ``SECRET_KEY`` (it
    refuses to start without a real one), its ``CDP_*`` settings and nothing of the
    demo's; the back office admits HTTP Basic user ``admin`` with ``SHOP_ADMIN_PASSWORD``.
    The site's factory never touches its database (``flask --app wsgi shop init-db``
    makes the shop's tables), so ``flask cdp check`` and the workers can report an
    outage instead of failing to start.
    """
    # the environment, and .env for what it does not set: read afresh each time (a reload's new workers)
    environment = process_environment()
    app = Flask(__name__, instance_path=instance_path)
    os.makedirs(app.instance_path, exist_ok=True)
    site_database = environment.get("SQLALCHEMY_DATABASE_URI")
    if site_database:
        # A site on its own database is no demo: configured by the environment alone, with
        # no passwordless demo logins and no demo data.
        app.config.update(SQLALCHEMY_DATABASE_URI=database_url(site_database), SECRET_KEY=_site_secret(environment), SHOP_DEMO=False,
                          SHOP_ADMIN_PASSWORD=_admin_password(environment))
        _behind_proxies(app, environment)
        cdp_defaults: dict[str, Any] = {"CDP_CONSENT_COOKIE": CONSENT_COOKIE}  # the shop's banner sets it
    else:
        with _first_run_lock(app):
            secret_key = environment.get("SECRET_KEY") or _instance_secret(app, "session_key")
        app.config.update(SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(app.instance_path, "demo.sqlite3"),
                          SECRET_KEY=secret_key, SHOP_DEMO=True)
        cdp_defaults = _demo_settings(app, environment)
        keys = {key: environment.get(key) or cdp_defaults[key] for key in
                ("CDP_MEMBERSHIP_API_KEY", "CDP_MEMBERSHIP_ACTIVATION_ID", "CDP_RECOMMENDATIONS_API_KEY")}
        stand_in = _start_raptor_stand_in(app, keys) if _calls_raptor() else NOWHERE
        for key in ("CDP_MEMBERSHIP_API_URL", "CDP_SERVER_TRACKING_URL", "CDP_RECOMMENDATIONS_API_URL"):
            cdp_defaults[key] = stand_in
    app.config.update(cdp_defaults)
    # cdp_bridge reads app.config first: the environment's (and .env's) CDP_* win over the defaults
    app.config.update({key: value for key, value in environment.items() if key.startswith("CDP_") and value.strip()})
    app.config.update(config or {})
    db.init_app(app)
    cdp.init_app(app, db=db)
    if app.config["SHOP_DEMO"]:  # the demo's own SQLite file, made on first run
        with _first_run_lock(app), app.app_context():
            db.create_all()
            _seed_first_run()
    app.register_blueprint(shop)
    if app.config["SHOP_DEMO"]:
        app.register_blueprint(raptor_stand_in)
    return app


#: The demo's commands that call Raptor's servers (its stand-in): ``check`` asks each API
#: once, ``till-sale`` sends offline buys; ``run`` serves pages that call them.
STAND_IN_COMMANDS = frozenset({"run", "check", "till-sale"})
#: Where the other commands' Raptor settings point: the discard port, so nothing leaves
#: the machine (and none of them calls it).
NOWHERE = "http://127.0.0.1:9"


def _calls_raptor() -> bool:
    """Whether this process needs the stand-in for Raptor's servers: it serves the shop
    (gunicorn, ``flask run``, a test's app: no ``flask`` command, or ``run``) or runs a
    command that calls Raptor. ``flask cdp init-db``, ``worker``, ``segments`` and the rest
    start no server thread."""
    context = click.get_current_context(silent=True)
    return context is None or context.info_name in STAND_IN_COMMANDS


def _behind_proxies(app: Flask, environment: dict[str, str]) -> None:
    """``PROXY_COUNT`` proxies (a TLS proxy: 1) in front: Werkzeug's ``ProxyFix`` trusts
    that many ``X-Forwarded-For`` / ``-Proto`` / ``-Host`` hops, so the rate limits see the
    visitor's address and every cookie, the session's included, is ``Secure`` on HTTPS.
    ``SESSION_COOKIE_SECURE`` (default: true behind a proxy) may say otherwise."""
    text = environment.get("PROXY_COUNT", "0").strip() or "0"
    if not text.isdigit() or int(text) > 10:
        raise ConfigurationError(f"PROXY_COUNT: expected the number of proxies in front of the site (0-10), not {text!r}")
    count = int(text)
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)  # type: ignore[method-assign]
    secure = environment.get("SESSION_COOKIE_SECURE", "").strip().lower()
    if secure and secure not in ("true", "1", "yes", "false", "0", "no"):
        raise ConfigurationError(f"SESSION_COOKIE_SECURE: expected true or false, not {secure!r}")
    app.config["SESSION_COOKIE_SECURE"] = secure in ("true", "1", "yes") if secure else count > 0


#: The shortest SECRET_KEY and SHOP_ADMIN_PASSWORD a site starts with.
MIN_SECRET_KEY_LENGTH, MIN_ADMIN_PASSWORD_LENGTH = 32, 12


def _site_secret(environment: dict[str, str]) -> str:
    """The site's SECRET_KEY: required, long, and no placeholder left from the README."""
    key = environment.get("SECRET_KEY", "").strip()
    if not key:
        raise ConfigurationError("SECRET_KEY: SQLALCHEMY_DATABASE_URI is set but SECRET_KEY is not: set a long random"
                                 " SECRET_KEY in the environment or the .env file (sessions and CSRF tokens are signed"
                                 " with it)")
    problem = secret_problem(key, MIN_SECRET_KEY_LENGTH)
    if problem:
        raise ConfigurationError(f"SECRET_KEY: {problem}")
    return key


def _admin_password(environment: dict[str, str]) -> str | None:
    """SHOP_ADMIN_PASSWORD, if set: long enough and no placeholder (unset: no back office)."""
    password = environment.get("SHOP_ADMIN_PASSWORD", "").strip()
    if not password:
        return None
    problem = secret_problem(password, MIN_ADMIN_PASSWORD_LENGTH)
    if problem:
        raise ConfigurationError(f"SHOP_ADMIN_PASSWORD: {problem}")
    return password


def _demo_settings(app: Flask, environment: dict[str, str]) -> dict[str, Any]:
    """The demo's cdp_bridge settings; an activation in the environment replaces its own."""
    settings: dict[str, Any] = {
        "CDP_ACTIVATION_CLIENT_ID": DEMO_CLIENT_ID,
        "CDP_ACTIVATION_CLIENT_SECRET": _instance_secret(app, "activation_client_secret"),
        "CDP_SEGMENT_GROUP_IDENTIFIER": DEMO_GROUP,
        # Tracking: a made-up account number and a local stand-in for Raptor's script, so
        # the demo sends nothing off the machine.
        "CDP_ACCOUNT_NUMBER": "1234",
        "CDP_CONSENT_COOKIE": CONSENT_COOKIE,
        "CDP_TRACKING_SCRIPT_URL": "/static/raptor-demo.js",
        # Visitor segments from a local stand-in for Raptor's CDP API (see below); a short
        # cache, so a visitor who just looked at a cat product sees the offer soon.
        "CDP_MEMBERSHIP_ACTIVATION_ID": DEMO_MEMBERSHIP_ACTIVATION_ID,
        "CDP_MEMBERSHIP_API_KEY": _instance_secret(app, "membership_api_key"),
        "CDP_MEMBERSHIP_TIMEOUT": 1,
        "CDP_VISITOR_SEGMENTS_CACHE_TTL": 10,
        # Recommendation blocks from the stand-in for Raptor's Recommendations API: three web
        # modules as an operator creates them in Raptor's control panel (docs/recommendations.md).
        "CDP_RECOMMENDATIONS_API_KEY": _instance_secret(app, "recommendations_api_key"),
        "CDP_RECOMMENDATIONS_CACHE_TTL": 10,
        "CDP_RECOMMENDATION_MODULES": DEMO_RECOMMENDATION_MODULES,
    }
    activation_keys = ("CDP_ACTIVATION_CLIENT_ID", "CDP_ACTIVATION_CLIENT_SECRET", "CDP_SEGMENT_GROUP_IDENTIFIER")
    if any(environment.get(key) for key in (*activation_keys, "CDP_ACTIVATIONS")):
        for key in activation_keys:
            del settings[key]
    return settings


@contextmanager
def _first_run_lock(app: Flask) -> Iterator[None]:
    """One process at a time makes the demo's first-run files: gunicorn's workers build
    the app at once, and without it two would both create the tables (one failing on
    "table already exists", which stops gunicorn) or each make a different secret."""
    with open(os.path.join(app.instance_path, "first-run.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed, or the process dies
        yield


def _instance_secret(app: Flask, name: str) -> str:
    """A random secret made on first run and kept in the (git-ignored) instance folder."""
    path = os.path.join(app.instance_path, "demo-secrets.json")
    stored: dict[str, str] = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    if name not in stored:
        stored[name] = secrets.token_urlsafe(32)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(stored, handle)
    return stored[name]


def _seed_first_run() -> None:
    if db.session.scalar(select(DemoUser).limit(1)) is None:
        db.session.add_all(DemoUser(**user) for user in DEMO_USERS)
        db.session.commit()
    store = cdp.store
    for identifier, name in ((DEMO_GROUP, "Demo shop (CDP activation)"), (INTERESTS_GROUP, "Interests (by hand)")):
        try:
            store.create_group(identifier, name)
        except ConflictError:
            continue
        if identifier == INTERESTS_GROUP:
            store.add_members(INTERESTS_GROUP, "newsletter", ["1", "3"], name="Newsletter readers")


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
    """The shop's users, for flask cdp stream-user-data: the model's columns as rows, read
    in chunks (no object is built per user; see the README's Performance section)."""
    query = select(DemoUser.id, DemoUser.login, DemoUser.email, DemoUser.name, DemoUser.is_admin)
    yield from db.session.execute(query.order_by(DemoUser.id).execution_options(yield_per=1000)).mappings()


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
    item["is_admin"] = bool(user["is_admin"])
    return item


@shop.app_context_processor
def shop_context() -> dict[str, Any]:
    return {
        "user": signed_in_user(),
        "basket_count": sum(_basket().values()),
        "currency": CURRENCY,
        "demo_logins": current_app.config["SHOP_DEMO"],
        # The blocks whose module is configured: a site's .env may configure none.
        "recommendation_blocks": current_app.extensions["cdp"].settings.recommendation_modules,
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


def _start_raptor_stand_in(app: Flask, settings: dict[str, Any]) -> str:
    """Serve cdp_bridge's stand-in for Raptor's servers (cdp_bridge.testing) on a loopback
    port of its own, answering from the demo's own data; return its URL."""
    stand_in = RaptorStandIn(membership_api_key=settings["CDP_MEMBERSHIP_API_KEY"],
                             activation_id=settings["CDP_MEMBERSHIP_ACTIVATION_ID"],
                             recommendations_api_key=settings["CDP_RECOMMENDATIONS_API_KEY"])

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

    stand_in.answer_visitor_segments = visitor_segments
    stand_in.answer_recommendations = recommendations
    stand_in.on_event = tracking_event
    app.extensions["demo_raptor_stand_in"] = stand_in
    return stand_in.url
