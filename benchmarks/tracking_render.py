"""Render cost of the tracking helpers, against the same work without them (not a test).

1. Each helper called in turn, in rounds, on 5,000 different products (so nothing a
   helper might keep is warm, as in a real shop): median microseconds per call (target
   for the event helpers: at most 20 µs).
2. A product page with a visit and one buy line, requested through the app, against
   the strongest hand-written equivalent: the same ``raptor.push`` calls written in the
   template, their parameters through ``|tojson`` (target: at most 1.1x); and, for
   information, against the page without them. Nothing else in the request (no session,
   no database), 5,000 different products, alternating rounds: ratio min / median / max.
3. For comparison, the demo's page with the full tracking script and five events
   against the same page of an app whose helpers render nothing.

    .venv/bin/python benchmarks/tracking_render.py [--calls N] [--rounds N] [--requests N]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, render_template
from timing import alternating_medians, alternating_rounds, no_reset, ratio_spread, spread_text, verdict

import wsgi
from cdp_bridge import CDP
from cdp_bridge.templating.tracking import TRACKING_GLOBALS
from demo.models import PRODUCTS as DEMO_PRODUCTS

PRODUCTS = [{"id": f"sku-{i:05d}", "name": f"Product {i} \"deluxe\"", "price": Decimal(f"{i % 997}.{i % 100:02d}"),
             "brand": f"Brand {i % 40}", "category_path": [(f"c{i % 7}", f"Category {i % 7}"), (f"s{i % 31}", f"Sub {i % 31}")],
             "in_stock": i % 3 != 0} for i in range(5000)]
_next = itertools.cycle(PRODUCTS).__next__

HELPER_CALLS: dict[str, Callable[[dict], object]] = {
    "cdp_head_script": lambda g: g["cdp_head_script"](),
    "cdp_main_script": lambda g: g["cdp_main_script"](),
    "cdp_track_visit": lambda g: (p := _next()) and g["cdp_track_visit"](
        p["id"], name=p["name"], price=p["price"], currency="EUR", category_path=p["category_path"]),
    "cdp_track_buy (1 line)": lambda g: (p := _next()) and g["cdp_track_buy"](
        [{"id": p["id"], "price": p["price"], "quantity": 2}], order_id="o1", currency="EUR"),
    "cdp_track_basket": lambda g: (p := _next()) and g["cdp_track_basket"](p["id"], [p["id"], "b", "c"]),
    "cdp_track_content_visit": lambda g: (p := _next()) and g["cdp_track_content_visit"](p["id"], title=p["name"]),
    "cdp_track_event": lambda g: (p := _next()) and g["cdp_track_event"]("search", p9=p["name"]),
    "cdp_set_user": lambda g: g["cdp_set_user"](),
}

PRODUCT_PAGE = """<!doctype html><html><head><title>{{ product.name }}</title>{{ head }}</head><body>
<h1>{{ product.name }}</h1><p class="brand">{{ product.brand }}</p><p class="price">{{ product.price }} EUR</p>
<nav>{% for id, name in product.category_path %}<a href="/c/{{ id }}">{{ name }}</a>{% endfor %}</nav>
<form method="post" action="/basket"><input type="hidden" name="product_id" value="{{ product.id }}">
<button>Add to basket</button></form>
{% block tracking %}{% endblock %}</body></html>"""
WITH_TRACKING = """{% extends base %}{% block tracking %}
{{ cdp_track_visit(product.id, name=product.name, category_path=product.category_path, price=product.price,
                   currency="EUR", brand=product.brand, in_stock=product.in_stock) }}
{{ cdp_track_buy([{"id": product.id, "price": product.price, "quantity": 1}], order_id="o1", currency="EUR") }}
{% endblock %}"""
#: The same two events written by hand, as a skeptic would: Raptor's push calls in the
#: template, their parameters through Jinja's ``|tojson`` (no checks, no formatting rules).
HAND_WRITTEN = """{% extends base %}{% block tracking %}
<script>window.raptor&&window.raptor.push("trackEvent",{{ {"p1": "visit", "p2": product.id, "p3": product.name,
  "p4": product.category_path|map("join", "#")|join(";"), "p12": "%.2f"|format(product.price), "p6": "EUR",
  "p8": product.brand, "p15": "true" if product.in_stock else "false"}|tojson }});</script>
<script>window.raptor&&window.raptor.push("trackEvent",{{ {"p1": "buy", "p2": product.id,
  "p12": "%.2f"|format(product.price), "p13": "1", "p6": "EUR", "p21": "o1", "p5": "%.2f"|format(product.price)}|tojson }});</script>
{% endblock %}"""
#: The same page, through the same inheritance, with an empty tracking block.
WITHOUT_TRACKING = """{% extends base %}{% block tracking %}
{% endblock %}"""


def product_page_app() -> Flask:
    """Nothing but the page: the two helpers, or the same template without them."""
    app = Flask("product_page")
    app.config.update(SQLALCHEMY_DATABASE_URI="sqlite://", CDP_ACCOUNT_NUMBER="123456", CDP_INLINE_WORKER=False)
    CDP(app)
    base = app.jinja_env.from_string(PRODUCT_PAGE)
    tracked = app.jinja_env.from_string(WITH_TRACKING)
    untracked = app.jinja_env.from_string(WITHOUT_TRACKING)

    @app.get("/with/<int:index>")
    def with_tracking(index: int) -> str:
        return render_template(tracked, base=base, product=PRODUCTS[index], head="")

    by_hand = app.jinja_env.from_string(HAND_WRITTEN)

    @app.get("/hand/<int:index>")
    def hand_written(index: int) -> str:
        return render_template(by_hand, base=base, product=PRODUCTS[index], head="")

    @app.get("/without/<int:index>")
    def without_tracking(index: int) -> str:
        return render_template(untracked, base=base, product=PRODUCTS[index], head="")

    return app
EVENT_HELPERS = {"cdp_track_visit", "cdp_track_buy (1 line)", "cdp_track_basket", "cdp_track_content_visit", "cdp_track_event"}

BENCH_PAGE = """{% extends "product.html" %}
{% block tracking %}
  {{ cdp_track_visit(product.id, name=product.name, category_path=product.category_path, price=product.price,
                     currency=currency, brand=product.brand, in_stock=product.in_stock) }}
  {{ cdp_track_basket(product.id, [product.id, "cat-food"]) }}
  {{ cdp_track_content_visit("guide-1", title="Choosing a cat tree") }}
  {{ cdp_track_event("search", p9="cat tree") }}
  {{ cdp_track_buy([{"id": product.id, "price": product.price, "quantity": 1}], order_id="o1", currency=currency) }}
{% endblock %}"""


def bench_app(instance_path: str, with_helpers: bool) -> Flask:
    """The demo with a /bench page; without helpers, each renders nothing at no cost."""
    app = wsgi.create_app({}, instance_path=instance_path)
    page = app.jinja_env.from_string(BENCH_PAGE)  # compiled once, like a template file

    @app.get("/bench")
    def bench() -> str:
        return render_template(page, product=DEMO_PRODUCTS["cat-tree"])

    if not with_helpers:
        nothing = lambda *a, **k: ""  # noqa: E731 - the stand-in for every helper
        for name in TRACKING_GLOBALS:
            if name not in ("cdp_in_segment", "cdp_user_segments"):
                app.jinja_env.globals[name] = nothing
    return app


def logged_in_page(app: Flask) -> Callable[[], object]:
    """A request of /bench by a logged-in demo user, checked once."""
    client = app.test_client()
    client.post("/login", data={"login": "bob"})
    assert client.get("/bench").status_code == 200
    return lambda: client.get("/bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per helper per round")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--requests", type=int, default=10, help="requests per page per round")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as with_folder, tempfile.TemporaryDirectory() as without_folder:
        app = bench_app(with_folder, with_helpers=True)
        globals_ = app.jinja_env.globals
        with app.test_request_context("/products/cat-tree"):
            from flask import session

            session["user_id"] = 2
            actions = {name: (functools.partial(call, globals_), no_reset) for name, call in HELPER_CALLS.items()}
            for name, seconds in alternating_medians(actions, args.rounds, args.calls).items():
                micro = seconds * 1e6
                target = " (target <= 20 us: " + ("meets" if micro <= 20 else "MISSES") + ")" if name in EVENT_HELPERS else ""
                print(f"{name:28s} {micro:8.1f} us per call{target}")

        client = product_page_app().test_client()
        counter = itertools.count()
        page = {side: (lambda side=side: client.get(f"/{side}/{next(counter) % len(PRODUCTS)}"))
                for side in ("with", "hand", "without")}
        alternating_rounds(page, 1, args.requests * 10)  # warm-up round, not counted
        times = alternating_rounds(page, args.rounds, args.requests * 10)
        print(f"product page with a visit and a buy line: {statistics.median(times['with']) * 1e6:6.0f} us per request;"
              f" the same events written by hand with |tojson: {statistics.median(times['hand']) * 1e6:6.0f} us;"
              f" without them: {statistics.median(times['without']) * 1e6:6.0f} us (5,000 products, nothing else in the request)")
        spread = ratio_spread(times["with"], times["hand"])
        print(f"ratio product page with the two helpers / the same raptor.push calls written by hand: {spread_text(spread)}"
              f" (target <= 1.1x: {verdict(spread, 1.1)})")
        spread = ratio_spread(times["with"], times["without"])
        print(f"ratio product page with / without the two helpers: {spread_text(spread)} (for information; the former"
              " baseline)")

        pages = {"with": logged_in_page(app), "without": logged_in_page(bench_app(without_folder, with_helpers=False))}
        demo = alternating_rounds(pages, args.rounds, args.requests)
        print(f"for comparison, the demo's page with the tracking script + 5 events / the same without helpers: "
              f"{spread_text(ratio_spread(demo['with'], demo['without']))}")


if __name__ == "__main__":
    main()
