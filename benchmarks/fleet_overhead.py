"""What the fleet's metrics and rate limits cost a tracked page (not a test).

1. A product page with a visit and a buy line in server mode (its two events counted in
   ``cdp_tracking_events_total`` as they are queued, and sent by the sender thread to a
   stand-in for Raptor's host in its own process), through the app with consent and the
   visitor's cookies, on 5,000 products: the product as it ships, against the same app
   whose metrics are no-ops. cdp_bridge's Limiter adds nothing to the site's requests
   (it is not registered on the app; tests/tracking/test_rate_limits.py checks that), so
   this is the whole of the page's overhead. Target: at most 1.05x (median of the
   round-by-round ratios).
2. Hybrid's ``POST /cdp/track``, where both are on the request path: as it ships (two
   moving-window hits on ``memory://`` and two counters), against the same endpoint with
   Flask-Limiter turned off (``RATELIMIT_ENABLED = False``) and no-op metrics. For
   information: with ``redis://`` each hit is a round trip to Redis instead.

Rounds alternate product and baseline.

    .venv/bin/python benchmarks/fleet_overhead.py [--rounds N] [--requests N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask
from server_tracking import SESSION, VISITOR, product_site, requester, stand_in_host
from timing import alternating_rounds, ratio_spread, spread_text, verdict

import cdp_bridge.tracking.sender as sender_module
import cdp_bridge.tracking.service as service_module
from cdp_bridge import CDP


class _NoMetric:
    """A counter that counts nothing: the baseline's metrics."""

    def labels(self, *values: str) -> _NoMetric:
        return self

    def inc(self, amount: float = 1) -> None:
        pass


@contextmanager
def no_metrics() -> Iterator[None]:
    """The tracking path's counters as no-ops, for the baseline's requests only."""
    kept = service_module.TRACKING_EVENTS, sender_module.TRACKING_EVENTS
    service_module.TRACKING_EVENTS = sender_module.TRACKING_EVENTS = _NoMetric()  # type: ignore[assignment]
    try:
        yield
    finally:
        service_module.TRACKING_EVENTS, sender_module.TRACKING_EVENTS = kept


def without_metrics(request: Callable[[], None]) -> Callable[[], None]:
    def baseline() -> None:
        with no_metrics():
            request()

    return baseline


def hybrid_site(host_url: str, folder: str, limits: bool) -> Flask:
    app = Flask("hybrid_overhead", instance_path=folder)
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder}/bench.sqlite3",
                      CDP_ACCOUNT_NUMBER="123456", CDP_CONSENT_COOKIE="consent", CDP_TRACKING_MODE="hybrid",
                      CDP_SERVER_TRACKING_URL=host_url, CDP_INLINE_WORKER=False,
                      CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=10**9, RATELIMIT_ENABLED=limits)
    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
    return app


def poster(app: Flask) -> Callable[[], None]:
    """Posts of a consenting visitor's events, each visitor new (so no limit is reached)."""
    client = app.test_client(use_cookies=False)
    visitors = itertools.cycle([str(uuid.uuid4()) for _ in range(5000)])
    body = '{"params": {"p1": "visit", "p2": "sku-1"}, "url": "http://localhost/products/1"}'

    def post() -> None:
        response = client.post("/cdp/track", data=body, headers={
            "Content-Type": "application/json", "Sec-Fetch-Site": "same-origin",
            "Cookie": f"consent=1; rsa={next(visitors)}; rsaSession={SESSION}"})
        assert response.status_code == 204, response.get_data(as_text=True)

    return post


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.rounds} alternating rounds of {args.requests} requests a side"
          f" (visitor {VISITOR})")
    with stand_in_host() as host_url:
        with tempfile.TemporaryDirectory() as folder:
            site = product_site("server", host_url, folder)
            page = requester(site)
            pages = {"shipped": page, "no metrics": without_metrics(page)}
            alternating_rounds(pages, 1, args.requests // 10)  # warm-up, not counted
            times = alternating_rounds(pages, args.rounds, args.requests)
            spread = ratio_spread(times["shipped"], times["no metrics"])
            print(f"server-mode product page: {statistics.median(times['shipped']) * 1e6:6.0f} us shipped,"
                  f" {statistics.median(times['no metrics']) * 1e6:6.0f} us with no-op metrics (medians)")
            print(f"ratio tracked page with metrics and limiter / without: {spread_text(spread)}"
                  f" (target <= 1.05x: {verdict(spread, 1.05)})")
            site.extensions["cdp"].tracking.sender.stop(seconds=60)
        with tempfile.TemporaryDirectory() as limited, tempfile.TemporaryDirectory() as unlimited:
            limited_site, unlimited_site = hybrid_site(host_url, limited, True), hybrid_site(host_url, unlimited, False)
            posts = {"shipped": poster(limited_site), "no limits, no metrics": without_metrics(poster(unlimited_site))}
            alternating_rounds(posts, 1, args.requests // 10)
            times = alternating_rounds(posts, args.rounds, args.requests)
            spread = ratio_spread(times["shipped"], times["no limits, no metrics"])
            print(f"hybrid POST /cdp/track: {statistics.median(times['shipped']) * 1e6:6.0f} us shipped,"
                  f" {statistics.median(times['no limits, no metrics']) * 1e6:6.0f} us without limits and metrics")
            print(f"ratio /cdp/track with limits and metrics / without: {spread_text(spread)} (for information)")
            for site in (limited_site, unlimited_site):
                site.extensions["cdp"].tracking.sender.stop(seconds=60)


if __name__ == "__main__":
    main()
