"""Render cost of the tracking helpers, against the same work without them (not a test).

1. Each helper called in turn, in rounds: median microseconds per call (target for the event
   helpers: at most 20 µs).
2. A demo page (the shop's layout, a product, a logged-in user) with the full tracking
   script and five events, requested through the app, against the same page of a second
   app whose helpers are replaced by ones that return nothing, in alternating rounds of
   the same run (target: at most 1.25x).

    .venv/bin/python benchmarks/tracking_render.py [--calls N] [--rounds N] [--requests N]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, render_template
from timing import alternating_medians, no_reset

import wsgi
from cdp_bridge.tracking.helpers import TRACKING_GLOBALS

HELPER_CALLS: dict[str, Callable[[dict], object]] = {
    "cdp_head_script": lambda g: g["cdp_head_script"](),
    "cdp_main_script": lambda g: g["cdp_main_script"](),
    "cdp_track_visit": lambda g: g["cdp_track_visit"]("cat-tree", name="Cat tree", price="89.90", currency="EUR",
                                                      category_path=[("pets", "Pets"), ("cats", "Cats")]),
    "cdp_track_buy (1 line)": lambda g: g["cdp_track_buy"]([{"id": "a", "price": "9.99", "quantity": 2}],
                                                           order_id="o1", currency="EUR"),
    "cdp_track_basket": lambda g: g["cdp_track_basket"]("a", ["a", "b", "c"]),
    "cdp_track_content_visit": lambda g: g["cdp_track_content_visit"]("article-1", title="News"),
    "cdp_track_event": lambda g: g["cdp_track_event"]("search", p9="cat food"),
    "cdp_set_user": lambda g: g["cdp_set_user"](),
}
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
        return render_template(page, product=wsgi.PRODUCTS["cat-tree"])

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

        pages = {"with": (logged_in_page(app), no_reset),
                 "without": (logged_in_page(bench_app(without_folder, with_helpers=False)), no_reset)}
        page_seconds = alternating_medians(pages, args.rounds, args.requests)
        ratio = page_seconds["with"] / page_seconds["without"]
        print(f"page with tracking script + 5 events: {page_seconds['with'] * 1e6:8.0f} us per request")
        print(f"same page without helpers:            {page_seconds['without'] * 1e6:8.0f} us per request")
        print(f"ratio: {ratio:.2f}x (target <= 1.25x: {'meets' if ratio <= 1.25 else 'MISSES'})")


if __name__ == "__main__":
    main()
