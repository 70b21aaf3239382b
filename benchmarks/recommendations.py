"""What a recommendation block costs a page (not a test).

1. A product page with one block ("others also viewed", 4 products) through gunicorn (the
   shipped config, one worker: its cache is the process's own) over HTTP, its answer cached, against the same page whose block loops
   over the same four records hard-coded in the view: what a site pays for the helper when
   Raptor's answer is at hand. 200 products, each page warmed first; one client with a
   kept-alive connection, rounds alternating. Target: at most 1.1x (median of the ratios).
2. The same pages in process (Flask's test client: no HTTP to hide the block's cost), the
   same target.
3. A cache miss, through the app in process (so the only network is the call itself): the
   page with the cache off, minus the cached page, against a bare urllib3 GET of the same
   URL from the same process. Target: about 1x (the miss adds the round trip and no more).

The Recommendations API is a stand-in in a process of its own (``lean_http_host.py``,
answering every request with the same four ids).

    .venv/bin/python benchmarks/recommendations.py [--rounds N] [--requests N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
import urllib3
from flask import Flask, render_template
from server_tracking import stand_in_host
from timing import alternating_rounds, ratio_spread, spread_text, verdict

from cdp_bridge import CDP
from tests.support.postgres_server import free_port
from tests.support.processes import REPO, process_env, wait_until_serving

KEY = "bench-recommendations-key"
IDS = ["sku-00001", "sku-00002", "sku-00003", "sku-00004"]
ANSWER = json.dumps([{"RecommendedId": item_id, "Priority": 4 - rank} for rank, item_id in enumerate(IDS)])
PRODUCTS = {f"sku-{n:05d}": {"id": f"sku-{n:05d}", "name": f"Product {n} \"deluxe\"", "price": f"{n % 97}.90",
                             "brand": f"Brand {n % 40}"} for n in range(200)}
PAGE = """<!doctype html><html><head><title>{{ product.name }}</title></head><body>
<h1>{{ product.name }}</h1><p class="brand">{{ product.brand }}</p><p class="price">{{ product.price }} EUR</p>
<form method="post" action="/basket"><input type="hidden" name="product_id" value="{{ product.id }}">
<button>Add to basket</button></form>
<section><h2>Others also viewed</h2><ul>
{% for other in (others if others is not none else cdp_recommendations("also_viewed", product_id=product.id)) %}
<li><a href="/products/{{ other.id }}">{{ other.name }}</a> <span>{{ other.price }} EUR</span></li>
{% else %}<li>Our best sellers</li>{% endfor %}
</ul></section></body></html>"""
SITE = '''
import sys
sys.path.insert(0, {benchmarks!r})
from recommendations import make_site
app = make_site({api!r}, {folder!r}, {ttl!r})
'''


def make_site(api_url: str, folder: str, ttl: int = 300) -> Flask:
    """The product site: /products/<id> with the block, /hardcoded/<id> with its records in the view."""
    app = Flask("recommending_site", instance_path=folder)
    modules = {"also_viewed": {"method": "GetSimilarItemsWeb", "kind": "product", "count": 4,
                               "parameters": {"itemId": "product_id"}}}
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{folder}/bench.sqlite3", CDP_ACCOUNT_NUMBER="123456",
                      CDP_INLINE_WORKER=False, CDP_RECOMMENDATIONS_API_URL=api_url, CDP_RECOMMENDATIONS_API_KEY=KEY,
                      CDP_RECOMMENDATIONS_CACHE_TTL=ttl, CDP_RECOMMENDATION_MODULES=modules)
    cdp = CDP(app)
    page = app.jinja_env.from_string(PAGE)

    @cdp.recommendation_loader("product")
    def products(ids: list[str]) -> dict[str, dict[str, str]]:
        return {item_id: PRODUCTS[item_id] for item_id in ids if item_id in PRODUCTS}

    @app.get("/products/<product_id>")
    def with_block(product_id: str) -> str:
        return render_template(page, product=PRODUCTS[product_id], others=None)

    hard_coded = [PRODUCTS[item_id] for item_id in IDS]

    @app.get("/hardcoded/<product_id>")
    def with_records(product_id: str) -> str:
        return render_template(page, product=PRODUCTS[product_id], others=hard_coded)

    return app


def served(api_url: str, folder: str) -> tuple[subprocess.Popen[str], str]:
    """The site under gunicorn with the shipped config, one worker."""
    Path(folder, "bench_site.py").write_text(SITE.format(benchmarks=str(Path(__file__).resolve().parent), api=api_url,
                                                          folder=folder, ttl=300))
    port = free_port()
    # One worker: each process keeps its own cache, and with two the warm-up cannot make sure
    # both hold every product's answer, so misses leaked into the "cached" side.
    env = process_env(Path(folder), GUNICORN_APP="bench_site:app", GUNICORN_BIND=f"127.0.0.1:{port}",
                      GUNICORN_ACCESSLOG="", GUNICORN_LOGLEVEL="warning", GUNICORN_WORKERS="1")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(REPO / "gunicorn.conf.py")], cwd=folder,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(url + "/hardcoded/sku-00000", server)
    return server, url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--requests", type=int, default=400, help="requests per page per round")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.rounds} alternating rounds of {args.requests} requests a side")
    with stand_in_host(ANSWER) as api_url, tempfile.TemporaryDirectory() as folder:
        server, url = served(api_url, folder)
        try:
            session = requests.Session()
            for _ in range(2):  # every product's answer cached (not counted)
                for product_id in PRODUCTS:
                    assert "Product 1 " in session.get(f"{url}/products/{product_id}", timeout=10).text
            ids = itertools.cycle(PRODUCTS)
            pages = {side: (lambda side=side: session.get(f"{url}/{side}/{next(ids)}", timeout=10))
                     for side in ("products", "hardcoded")}
            times = alternating_rounds(pages, args.rounds, args.requests)
            spread = ratio_spread(times["products"], times["hardcoded"])
            print(f"product page with a cached block, through gunicorn: {statistics.median(times['products']) * 1e6:6.0f} us;"
                  f" the same records hard-coded: {statistics.median(times['hardcoded']) * 1e6:6.0f} us (medians)")
            print(f"ratio page with a cached recommendation block / hard-coded records: {spread_text(spread)}"
                  f" (target <= 1.1x: {verdict(spread, 1.1)})")
        finally:
            server.terminate()
            server.wait(30)

        with tempfile.TemporaryDirectory() as cached_folder, tempfile.TemporaryDirectory() as miss_folder:
            cached = make_site(api_url, cached_folder).test_client()
            missing = make_site(api_url, miss_folder, ttl=0).test_client()
            pool = urllib3.PoolManager()
            call = f"{api_url}/v1/123456/GetSimilarItemsWeb/4/{KEY}?itemId=sku-00007&json=True"
            for _ in range(2):  # every product's answer cached (not counted)
                for product_id in PRODUCTS:
                    cached.get(f"/products/{product_id}")
            ids = itertools.cycle(PRODUCTS)
            in_process = {side: (lambda side=side: cached.get(f"/{side}/{next(ids)}"))
                          for side in ("products", "hardcoded")}
            times = alternating_rounds(in_process, args.rounds, args.requests)
            spread = ratio_spread(times["products"], times["hardcoded"])
            print(f"product page with a cached block, in process (test client):"
                  f" {statistics.median(times['products']) * 1e6:6.0f} us; the same records hard-coded:"
                  f" {statistics.median(times['hardcoded']) * 1e6:6.0f} us (medians)")
            print(f"ratio in process, page with a cached recommendation block / hard-coded records: {spread_text(spread)}"
                  f" (target <= 1.1x: {verdict(spread, 1.1)})")
            for _ in range(50):
                cached.get("/products/sku-00007")
            sides = {"miss": lambda: missing.get("/products/sku-00007"), "cached": lambda: cached.get("/products/sku-00007"),
                     "round trip": lambda: pool.request("GET", call).data}
            times = alternating_rounds(sides, args.rounds, args.requests // 4)
            added = [miss - hit for miss, hit in zip(times["miss"], times["cached"], strict=True)]
            spread = ratio_spread(added, times["round trip"])
            print(f"cache miss: the page {statistics.median(times['miss']) * 1e6:6.0f} us, cached"
                  f" {statistics.median(times['cached']) * 1e6:6.0f} us, a bare urllib3 GET of the same URL"
                  f" {statistics.median(times['round trip']) * 1e6:6.0f} us (medians)")
            print(f"ratio what a miss adds / the bare round trip: {spread_text(spread)} (target about 1x: the miss adds"
                  f" the call and no more; for information)")


if __name__ == "__main__":
    main()
