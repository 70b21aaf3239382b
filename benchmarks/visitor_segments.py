"""What visitor segments cost a page (not a test).

1. A page with 5 segment checks for a visitor whose memberships are cached (1,000
   visitors, each answered once before), against the same page without the checks, both
   requested over HTTP from gunicorn (one gthread worker; a keep-alive client) with the
   visitor's consent and rsa cookies, as a visitor's browser asks: ratio min / median /
   max over alternating rounds (target: at most 1.1x).
2. The same two pages through Flask's test client, without HTTP, for comparison.
3. A cache miss: the same page with the cache off (each request asks the API once), as
   the time it adds to the page, against the fake API's own latency: a bare pooled
   ``requests`` GET of the same URL with the same headers.

The API is a local fake (a real HTTP server on loopback), so the miss's figure is
cdp_bridge's overhead around one HTTP round trip, not Raptor's latency. The site has a
SECRET_KEY, as every site with a login or a basket has: Flask then reads the request's
cookies on every request for its session, so both pages pay for parsing them, and the
checks pay only for what they do with them.

    .venv/bin/python benchmarks/visitor_segments.py [--rounds N] [--requests N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from flask import Flask, render_template
from timing import alternating_rounds, ratio_spread, spread_text, verdict

from cdp_bridge import CDP
from tests.support.fake_membership_api import FakeMembershipAPI, Reply
from tests.support.load import start_gunicorn
from tests.support.processes import wait_until_serving

#: The module gunicorn serves: :func:`site` with the fake API's URL from the environment.
SERVED_SITE = """import os, sys
sys.path.insert(0, {benchmarks!r})
from visitor_segments import site
app = site(os.environ["BENCH_API_URL"], os.environ["BENCH_FOLDER"], ttl=3600)
"""

ACTIVATION_ID, API_KEY = "bench-activation", "bench-key"
VISITORS = [str(uuid.UUID(int=n + 1, version=4)) for n in range(1000)]
PAGE = """<!doctype html><html><head><title>Pets</title></head><body><h1>Everything for your pets</h1>
{% block offers %}{% endblock %}
<ul>{% for n in range(12) %}<li><a href="/products/{{ n }}">Product {{ n }}</a> <span>{{ n * 3 }}.90 EUR</span></li>{% endfor %}</ul>
</body></html>"""
WITH_CHECKS = """{% extends base %}{% block offers %}
{% if cdp_in_segment("Cat owners") %}<p>Cats</p>{% endif %}{% if cdp_in_segment("Dog owners") %}<p>Dogs</p>{% endif %}
{% if cdp_in_segment("77aa0001") %}<p>VIP</p>{% endif %}{% if cdp_in_segment("Newsletter") %}<p>News</p>{% endif %}
{% if cdp_in_segment("Big spenders") %}<p>Big</p>{% endif %}
{% endblock %}"""
WITHOUT_CHECKS = """{% extends base %}{% block offers %}
{% endblock %}"""


def site(api_url: str, folder: str, ttl: int) -> Flask:
    app = Flask("visitor_bench", instance_path=folder)
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder}/bench.sqlite3", CDP_CONSENT_COOKIE="consent",
                      CDP_MEMBERSHIP_API_URL=api_url, CDP_MEMBERSHIP_ACTIVATION_ID=ACTIVATION_ID,
                      CDP_MEMBERSHIP_API_KEY=API_KEY, CDP_VISITOR_SEGMENTS_CACHE_TTL=ttl, CDP_INLINE_WORKER=False)
    CDP(app)
    base = app.jinja_env.from_string(PAGE)
    pages = {"with": app.jinja_env.from_string(WITH_CHECKS), "without": app.jinja_env.from_string(WITHOUT_CHECKS)}

    @app.get("/<side>")
    def page(side: str) -> str:
        return render_template(pages[side], base=base)

    return app


def requester(app: Flask, path: str):
    """A request of ``path`` by the next visitor, with consent and the rsa cookie."""
    client = app.test_client()
    client.set_cookie("consent", "1")
    visitors = itertools.cycle(VISITORS).__next__

    def request() -> None:
        client.set_cookie("rsa", visitors())
        response = client.get(path)
        assert response.status_code == 200

    return request


def http_requester(session: requests.Session, url: str) -> Callable[[], None]:
    """A request of ``url`` over HTTP by the next visitor, with consent and the rsa cookie."""
    visitors = itertools.cycle(VISITORS).__next__

    def request() -> None:
        response = session.get(url, headers={"Cookie": f"consent=1; rsa={visitors()}"}, timeout=10)
        assert response.status_code == 200

    return request


def over_http(api_url: str, folder: str, rounds: int, count: int) -> dict[str, list[float]]:
    """Both pages from gunicorn, every visitor's answer cached first."""
    directory = Path(folder)
    (directory / "served_site.py").write_text(SERVED_SITE.format(benchmarks=str(Path(__file__).resolve().parent)))
    os.environ.update(BENCH_API_URL=api_url, BENCH_FOLDER=folder)
    server = start_gunicorn(directory, "served_site:app", workers=1, threads=4)
    base = f"http://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    try:
        wait_until_serving(base + "/without", server)
        session = requests.Session()
        warm = http_requester(session, base + "/with")
        for _ in VISITORS:
            warm()
        pages = {"with": http_requester(session, base + "/with"), "without": http_requester(session, base + "/without")}
        alternating_rounds(pages, 1, count // 10)  # warm-up, not counted
        return alternating_rounds(pages, rounds, count)
    finally:
        server.terminate()
        server.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--requests", type=int, default=1000, help="requests per page per round")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.rounds} alternating rounds of {args.requests} requests per page;"
          f" {len(VISITORS):,} visitors, each in 2 audiences")
    api = FakeMembershipAPI(default=Reply.memberships(("5d822e81", "Cat owners"), ("77aa0001", "VIP")))
    try:
        with tempfile.TemporaryDirectory() as served_folder:
            calls = len(api.asked)
            times = over_http(api.url, served_folder, args.rounds, args.requests)
            assert len(api.asked) - calls == len(VISITORS), "a cached visitor was asked again"
        spread = ratio_spread(times["with"], times["without"])
        print(f"over HTTP: page with 5 checks, cached visitor: {statistics.median(times['with']) * 1e6:6.0f} us;"
              f" without the checks: {statistics.median(times['without']) * 1e6:6.0f} us (medians)")
        print(f"ratio page with 5 checks / without, cached visitor, over HTTP: {spread_text(spread)}"
              f" (target <= 1.1x: {verdict(spread, 1.1)})")
        with tempfile.TemporaryDirectory() as cached_folder, tempfile.TemporaryDirectory() as uncached_folder:
            cached = site(api.url, cached_folder, ttl=3600)
            warm = requester(cached, "/with")
            for _ in VISITORS:  # every visitor answered once: from now on, all from the cache
                warm()
            calls = len(api.asked)
            pages = {"with": requester(cached, "/with"), "without": requester(cached, "/without")}
            alternating_rounds(pages, 1, args.requests // 10)  # warm-up, not counted
            times = alternating_rounds(pages, args.rounds, args.requests)
            assert len(api.asked) == calls, "a cached visitor was asked again"
            spread = ratio_spread(times["with"], times["without"])
            print(f"test client: page with 5 checks, cached visitor: {statistics.median(times['with']) * 1e6:6.0f} us;"
                  f" without the checks: {statistics.median(times['without']) * 1e6:6.0f} us (medians)")
            print(f"ratio page with 5 checks / without, cached visitor, test client (no HTTP): {spread_text(spread)}"
                  " (for comparison)")

            uncached = site(api.url, uncached_folder, ttl=0)
            session = requests.Session()
            url = f"{api.url}/api/v3/memberships/coid"
            headers = {"X-ACTIVATION-ID": ACTIVATION_ID, "X-API-KEY": API_KEY}
            next_visitor = itertools.cycle(VISITORS).__next__

            def bare_call() -> None:
                session.get(url, params={"identifierValue": next_visitor()}, headers=headers, timeout=5).json()

            misses = {"miss": requester(uncached, "/with"), "without": requester(uncached, "/without"), "api": bare_call}
            miss_rounds = max(5, args.rounds // 2)
            miss_times = alternating_rounds(misses, miss_rounds, max(50, args.requests // 10))
            added = [m - w for m, w in zip(miss_times["miss"], miss_times["without"])]
            print(f"cache miss: the page takes {statistics.median(added) * 1e6:6.0f} us more than without checks;"
                  f" the fake API's own round trip (pooled requests GET): {statistics.median(miss_times['api']) * 1e6:6.0f} us")
            print(f"ratio time a miss adds / the API's round trip: {spread_text(ratio_spread(added, miss_times['api']))}"
                  " (for comparison: cdp_bridge's cost around one call)")
    finally:
        api.close()


if __name__ == "__main__":
    main()
