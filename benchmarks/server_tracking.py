"""What server-side tracking costs (not a test).

1. A product page with a visit and a buy line in server mode (the events are queued for
   the sender thread, which sends them meanwhile, in the same process, to a stand-in for
   Raptor's host in a process of its own, ``lean_http_host.py``: Raptor's host is on
   another machine, so the stand-in is made to cost this one as little CPU as it can)
   against the same page in client mode (the events rendered as script),
   both through the app with consent and the visitor's cookies, on 5,000 different
   products: ratio min / median / max over alternating rounds (target: at most 1.1x,
   as the sending is off the request path).
2. The same two pages at a paced 200 requests a second (the sender keeps up between
   pages, as in a process that is not saturated): median page time, ratio (target: at
   most 1.1x). Pages back to back are pure CPU, so the sender only gets the GIL between
   them: that figure is for information.
3. The sender's throughput: N queued events drained to the fake host, against a raw
   ``requests.Session`` loop sending the same URLs to it, in alternating rounds.
4. The sender against a host 20 ms away (the stand-in answers each request 20 ms after
   it came in): events per second of one process's sender with ``concurrency`` 8 (the
   default) and 16, each against the strongest plain equivalent, a
   ``ThreadPoolExecutor`` of as many threads sending the same URLs through one urllib3
   pool (target: at least 400 events/s per process); and, for the before, the sender
   with one transfer at a time.

    .venv/bin/python benchmarks/server_tracking.py [--rounds N] [--requests N] [--events N] [--far-events N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
import urllib3
from flask import Flask, render_template
from timing import alternating_rounds, ratio_spread, spread_text, verdict
from tracking_render import PRODUCT_PAGE, PRODUCTS, WITH_TRACKING

from cdp_bridge import CDP
from cdp_bridge.tracking.sender import EventSender
from cdp_bridge.tracking.wire import Event, Visitor

VISITOR, SESSION = "0b6f7c2e-5a3d-4e1f-9c8b-7a6d5e4f3a2b", "1c7a8d3f-6b4e-4f2a-8d9c-8b7e6f5a4b3c"


@contextmanager
def stand_in_host(body: str | None = None, delay_ms: float = 0) -> Iterator[str]:
    """The stand-in for Raptor's tracking host (or, with a JSON ``body``, its
    Recommendations API), in a process of its own, answering ``delay_ms`` after each
    request; yields its URL."""
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parent / "lean_http_host.py"),
                                f"--delay-ms={delay_ms}", *([body] if body is not None else [])],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(30)


def product_site(mode: str, host_url: str, folder: str) -> Flask:
    app = Flask(f"tracking_{mode}", instance_path=folder)
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder}/bench.sqlite3",
                      CDP_ACCOUNT_NUMBER="123456", CDP_CONSENT_COOKIE="consent", CDP_TRACKING_MODE=mode,
                      CDP_SERVER_TRACKING_URL=host_url, CDP_INLINE_WORKER=False)
    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
    base = app.jinja_env.from_string(PRODUCT_PAGE)
    tracked = app.jinja_env.from_string(WITH_TRACKING)

    @app.get("/products/<int:index>")
    def product(index: int) -> str:
        return render_template(tracked, base=base, product=PRODUCTS[index], head="")

    return app


def requester(app: Flask):
    """Requests of a consenting visitor with both cookies. The Cookie header is sent as a
    browser sends it, and no cookie jar reads the answers' Set-Cookie headers: that is the
    browser's work, and the test client's jar did it in the measured process (server mode
    answers with one cookie more, which cost the page about 8 µs of parsing there)."""
    client = app.test_client(use_cookies=False)
    headers = {"Cookie": f"consent=1; rsa={VISITOR}; rsaSession={SESSION}"}
    counter = itertools.count()

    def request() -> None:
        assert client.get(f"/products/{next(counter) % len(PRODUCTS)}", headers=headers).status_code == 200

    return request


def paced_times(pages: dict[str, object], count: int, per_second: int, rounds: int = 5) -> dict[str, list[float]]:
    """Per side and round, the median time of ``count`` requests made ``per_second``
    apart (the pause between them is not counted); the sides alternate round by round."""
    medians: dict[str, list[float]] = {side: [] for side in pages}
    for _ in range(rounds):
        for side, request in pages.items():
            times = []
            for _ in range(count):
                started = time.perf_counter()
                request()  # type: ignore[operator]
                spent = time.perf_counter() - started
                times.append(spent)
                time.sleep(max(0.0, 1 / per_second - spent))
            medians[side].append(statistics.median(times))
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--requests", type=int, default=500, help="requests per page per round")
    parser.add_argument("--events", type=int, default=2000, help="events per sender round")
    parser.add_argument("--far-events", type=int, default=1000, help="events per round with the host 20 ms away")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.rounds} alternating rounds of {args.requests} page requests;"
          f" {args.events} events per sender round")
    with stand_in_host() as host_url:
        with tempfile.TemporaryDirectory() as server_folder, tempfile.TemporaryDirectory() as client_folder:
            server_site = product_site("server", host_url, server_folder)
            pages = {"server": requester(server_site), "client": requester(product_site("client", host_url, client_folder))}
            alternating_rounds(pages, 1, args.requests // 10)  # warm-up, not counted
            times = alternating_rounds(pages, args.rounds, args.requests)
            spread = ratio_spread(times["server"], times["client"])
            print(f"product page with a visit and a buy line: server mode {statistics.median(times['server']) * 1e6:6.0f} us,"
                  f" client mode {statistics.median(times['client']) * 1e6:6.0f} us (medians)")
            print(f"ratio product page server mode / client mode, back to back: {spread_text(spread)} (for information)")
            paced = paced_times(pages, args.requests // 2, 200, rounds=max(5, args.rounds // 2))
            paced_spread = ratio_spread(paced["server"], paced["client"])
            print(f"paced at 200 pages/s: server mode {statistics.median(paced['server']) * 1e6:6.0f} us,"
                  f" client mode {statistics.median(paced['client']) * 1e6:6.0f} us;"
                  f" ratio server / client: {spread_text(paced_spread)} (target <= 1.1x: {verdict(paced_spread, 1.1)})")
            server_site.extensions["cdp"].tracking.sender.stop(seconds=60)
            counts = server_site.extensions["cdp"].tracking.sender.counts()
            print(f"server mode's sender meanwhile: sent {counts.sent}, failed {counts.failed}, dropped {counts.dropped}")

        urls = [f"{host_url}/123456.rsa?p1=visit&p2=sku-{n:05d}&coid={VISITOR}&sid={SESSION}" for n in range(args.events)]
        session = requests.Session()

        def raw_loop() -> None:
            for url in urls:
                session.get(url, timeout=1).close()

        events = [Event(host_url, "123456", {"p1": "visit", "p2": f"sku-{n:05d}"}, Visitor(VISITOR, SESSION))
                  for n in range(args.events)]
        assert [event.url() for event in events] == urls  # the same requests on both sides

        def sender_drain() -> None:
            sender = EventSender(queue_size=len(events))
            for event in events:
                sender.enqueue(event)
            while sender.counts().sent + sender.counts().failed < len(urls):
                time.sleep(0.001)
            sender.stop()

        throughput = alternating_rounds({"sender": sender_drain, "raw": raw_loop}, max(5, args.rounds // 2))
        rates = {side: [args.events / seconds for seconds in values] for side, values in throughput.items()}
        print(f"sender: {statistics.median(rates['sender']):,.0f} events/s; raw requests.Session loop:"
              f" {statistics.median(rates['raw']):,.0f} events/s (medians)")
        print(f"ratio sender / raw loop throughput: {spread_text(ratio_spread(rates['sender'], rates['raw']))}")

    far_host(args.far_events, max(5, args.rounds // 2))


def drain(events: list[Event], concurrency: int) -> None:
    """One process's sender sends ``events`` (all queued at once), until the last is answered."""
    sender = EventSender(queue_size=len(events), concurrency=concurrency)
    for event in events:
        sender.enqueue(event)
    while sender.counts().sent + sender.counts().failed < len(events):
        time.sleep(0.001)
    sender.stop()
    assert sender.counts().sent == len(events), sender.counts()


def far_host(count: int, rounds: int, delay_ms: float = 20) -> None:
    """Part 4: events per second with the host ``delay_ms`` away, sender against pool."""
    with stand_in_host(delay_ms=delay_ms) as host_url:
        events = [Event(host_url, "123456", {"p1": "visit", "p2": f"sku-{n:05d}"}, Visitor(VISITOR, SESSION))
                  for n in range(count)]
        urls = [event.url() for event in events]
        sequential = events[: count // 5]
        started = time.perf_counter()
        drain(sequential, 1)
        print(f"host {delay_ms:.0f} ms away: the sender one event at a time (before): "
              f"{len(sequential) / (time.perf_counter() - started):,.0f} events/s")
        for concurrency in (8, 16):
            pool = urllib3.PoolManager(maxsize=concurrency, retries=False)

            def plain(pool: urllib3.PoolManager = pool, concurrency: int = concurrency) -> None:
                with ThreadPoolExecutor(concurrency) as executor:
                    for answer in executor.map(lambda url: pool.request("GET", url, timeout=1.0), urls):
                        assert answer.status == 200

            times = alternating_rounds({"sender": lambda c=concurrency: drain(events, c), "plain": plain}, rounds)
            rates = {side: [count / seconds for seconds in values] for side, values in times.items()}
            rate = statistics.median(rates["sender"])
            print(f"host {delay_ms:.0f} ms away, {concurrency} transfers: sender {rate:,.0f} events/s"
                  f" (min {min(rates['sender']):,.0f}, max {max(rates['sender']):,.0f}; target >= 400:"
                  f" {'meets' if rate >= 400 else 'MISSES'}); ThreadPoolExecutor over one urllib3 pool:"
                  f" {statistics.median(rates['plain']):,.0f} events/s")
            print(f"ratio sender / ThreadPoolExecutor, {concurrency} transfers, host {delay_ms:.0f} ms away:"
                  f" {spread_text(ratio_spread(rates['sender'], rates['plain']))}")
            pool.clear()


if __name__ == "__main__":
    main()
