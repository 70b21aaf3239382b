"""Small deliveries under load: the webhook against a plain Flask endpoint that does the
same work on the same database (not a test).

Each delivery adds 10 user ids to one of 20 audiences (the webhook applies it in the
request). 50 concurrent clients send N of them through gunicorn (gthread, 2 workers x 16
threads, the shipped gunicorn.conf.py) to PostgreSQL on loopback, with fsync on as a
production server runs (until 2026-12-05 this benchmark ran with fsync off, as the tests
do, which hid a row every delivery waited for until the one before had flushed its commit):

- ``one host``: cdp_bridge's ``POST /cdp/webhook`` on one gunicorn;
- ``plain``: a plain Flask endpoint under the same gunicorn that checks the Basic
  credentials (constant time), parses the JSON and, in one transaction, records the
  delivery, upserts the segment and inserts the memberships (one multi-row INSERT) into
  tables with the same columns, keys and indexes as cdp_bridge's, through a pooled
  SQLAlchemy engine: what a skeptic would write instead of the extension;
- ``two hosts``: the webhook on two gunicorns (127.0.0.2 and 127.0.0.3, 2 workers each),
  the clients alternating between them, as behind a load balancer (on this machine both
  hosts share its cores, so this shows the cost of a fleet, not its gain).

The clients are tasks of one asyncio event loop (aiohttp, :mod:`lean_client`), so the
load costs the server side next to nothing (a 50-thread ``requests`` client, used
before, took CPU from both sides). The plain endpoint's pool pings no connection, as
cdp_bridge's no longer does: the strongest plain baseline.

Then one client sends deliveries one at a time (the latency of a delivery alone). Each
side is warmed up with 200 deliveries first (not counted). Every side of every round
starts on a new database, dropped after it; the order of the sides alternates round
by round. Prints each side's requests per second and p50 / p99 latency, and the min /
median / max over the rounds of the ratios. Targets: one host at least 0.8x the plain
endpoint's requests per second, a p99 at most 1.5x its p99, and one client's latency at
most 2x.

    .venv/bin/python benchmarks/small_deliveries.py [--deliveries N] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa
from lean_client import send_all_async
from timing import ratio_spread, spread_text, verdict

from tests.support.load import AUTH, SITE_CONFIG, Delivery, Outcome, start_gunicorn
from tests.support.postgres_server import PostgresServer
from tests.support.processes import run_flask, wait_until_serving, write_app_module

AUDIENCES = 20
PLAIN_APP = '''
import hmac
import json
import os

import sqlalchemy as sa
from flask import Flask, jsonify, request

EXPECTED = os.environ["PLAIN_AUTH"].encode()
engine = sa.create_engine(os.environ["PLAIN_DATABASE_URL"], pool_size=16, max_overflow=0, pool_recycle=300)
app = Flask("plain")
INSERT_DELIVERY = sa.text(
    "INSERT INTO plain_deliveries (client_id, request_id, items, status, received_at, available_at)"
    " VALUES ('load-client', :request_id, :items, 'applied', now(), now()) RETURNING id")
UPSERT_SEGMENT = sa.text(
    "INSERT INTO plain_segments (group_id, identifier, name) VALUES (1, :identifier, :identifier)"
    " ON CONFLICT (group_id, identifier) DO UPDATE SET identifier = EXCLUDED.identifier RETURNING id")
INSERT_MEMBERS = sa.text(
    "INSERT INTO plain_memberships (segment_id, user_id) VALUES (:segment_id, :user_id) ON CONFLICT DO NOTHING")


@app.post("/plain")
def plain():
    if not hmac.compare_digest(request.headers.get("Authorization", "").encode(), EXPECTED):
        return jsonify(error="unauthorized"), 401
    body = json.loads(request.get_data())
    items = sum(len(audience["add"]) for audience in body["audiences"])
    with engine.begin() as conn:
        delivery_id = conn.execute(INSERT_DELIVERY, {"request_id": body["request_id"], "items": items}).scalar_one()
        for audience in body["audiences"]:
            segment_id = conn.execute(UPSERT_SEGMENT, {"identifier": audience["id"]}).scalar_one()
            conn.execute(INSERT_MEMBERS, [{"segment_id": segment_id, "user_id": user} for user in audience["add"]])
    return jsonify(status="applied", delivery_id=delivery_id, items=items)
'''
PLAIN_SCHEMA = [
    "CREATE TABLE plain_deliveries (id BIGSERIAL PRIMARY KEY, client_id VARCHAR(255) NOT NULL,"
    " request_id VARCHAR(255), items INTEGER NOT NULL, status VARCHAR(16) NOT NULL,"
    " received_at TIMESTAMPTZ NOT NULL, available_at TIMESTAMPTZ NOT NULL, UNIQUE (client_id, request_id))",
    "CREATE INDEX ix_plain_deliveries_status_available_at ON plain_deliveries (status, available_at)",
    "CREATE TABLE plain_segments (id SERIAL PRIMARY KEY, group_id INTEGER NOT NULL, identifier VARCHAR(255) NOT NULL,"
    " name VARCHAR(255) NOT NULL, UNIQUE (group_id, identifier))",
    "CREATE INDEX ix_plain_segments_name ON plain_segments (name)",
    "CREATE TABLE plain_memberships (segment_id INTEGER NOT NULL REFERENCES plain_segments (id) ON DELETE CASCADE,"
    " user_id VARCHAR(255) NOT NULL, PRIMARY KEY (segment_id, user_id))",
    "CREATE INDEX ix_plain_memberships_user_id_segment_id ON plain_memberships (user_id, segment_id)",
]


def workload(count: int, prefix: str = "small") -> list[Delivery]:
    deliveries = []
    for number in range(count):
        request_id = f"{prefix}-{number}"
        audience = {"id": f"a{number % AUDIENCES}", "add": [f"{number}-{k}" for k in range(10)]}
        deliveries.append(Delivery(request_id, json.dumps({"request_id": request_id, "audiences": [audience]}).encode()))
    return deliveries


Load = tuple[list[Delivery], list[Delivery]]


#: Sent to each side before it is timed (not counted): every worker's imports, pool and caches warm.
WARM_UP = 200


def send_load(urls: list[str], load: Load) -> tuple[Outcome, Outcome]:
    """After a warm-up, the concurrent deliveries from 50 clients, then the single client's
    one by one, from one asyncio event loop (:mod:`lean_client`)."""
    concurrent, single = load
    send_all_async(urls, workload(WARM_UP, "warm-up"), clients=50)
    return send_all_async(urls, concurrent, clients=50), send_all_async(urls, single, clients=1)


def webhook_side(pg: PostgresServer, folder: Path, load: Load, hosts: list[str]) -> tuple[Outcome, Outcome]:
    """The webhook on a new database, on one gunicorn per address in ``hosts``."""
    url = pg.create_database()
    module = write_app_module(folder, url, "small_site", **SITE_CONFIG)
    run_flask(folder, module, "cdp", "init-db")
    run_flask(folder, module, "cdp", "segment-group", "create", "load")
    servers = [start_gunicorn(folder, f"{module}:app", 2, 16, address) for address in hosts]
    try:
        urls = [server.url + "/cdp/webhook" for server in servers]  # type: ignore[attr-defined]
        for target, server in zip(urls, servers, strict=True):
            wait_until_serving(target, server)
        return send_load(urls, load)
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        pg.drop_database(url)  # the next side starts on a server as empty as this one did


def plain_side(pg: PostgresServer, folder: Path, load: Load) -> tuple[Outcome, Outcome]:
    """The plain endpoint on a new database with the same tables' shape."""
    url = pg.create_database()
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as conn:
        for statement in PLAIN_SCHEMA:
            conn.execute(sa.text(statement))
    engine.dispose()
    (folder / "plain_app.py").write_text(PLAIN_APP)
    server = start_gunicorn(folder, "plain_app:app", 2, 16, PLAIN_AUTH=AUTH, PLAIN_DATABASE_URL=url)
    try:
        target = server.url + "/plain"  # type: ignore[attr-defined]
        wait_until_serving(target, server)
        return send_load([target], load)
    finally:
        server.terminate()
        server.wait()
        pg.drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2_000, help="deliveries per side and round, from 50 clients")
    parser.add_argument("--single", type=int, default=200, help="then deliveries from one client, one at a time")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.deliveries:,} deliveries of 10 ids from 50 clients, then {args.single}"
          f" from one client, per side; {args.rounds} rounds, sides alternating, each on a new database")
    load = (workload(args.deliveries), workload(args.single, "single"))
    sides: dict[str, Callable[[PostgresServer, Path], tuple[Outcome, Outcome]]] = {
        "one host": lambda pg, folder: webhook_side(pg, folder, load, ["127.0.0.1"]),
        "plain": lambda pg, folder: plain_side(pg, folder, load),
        "two hosts": lambda pg, folder: webhook_side(pg, folder, load, ["127.0.0.2", "127.0.0.3"]),
    }
    results: dict[str, list[Outcome]] = {side: [] for side in sides}
    singles: dict[str, list[Outcome]] = {side: [] for side in sides}
    pg = PostgresServer.create(durable=True)
    try:
        for number in range(1, args.rounds + 1):
            order = list(sides) if number % 2 else list(reversed(sides))
            for side in order:
                with tempfile.TemporaryDirectory() as folder:
                    concurrent, single = sides[side](pg, Path(folder))
                for outcome, count in ((concurrent, args.deliveries), (single, args.single)):
                    assert outcome.statuses == {200: count}, (side, outcome.statuses)
                print(f"round {number}: " + concurrent.summary(side))
                print(f"round {number}: " + single.summary(side + ", one client"))
                results[side].append(concurrent)
                singles[side].append(single)
    finally:
        pg.destroy()

    def ratio(table: dict[str, list[Outcome]], side: str, other: str, figure: Callable[[Outcome], float]) -> tuple[float, float, float]:
        return ratio_spread([figure(o) for o in table[side]], [figure(o) for o in table[other]])

    rps = ratio(results, "one host", "plain", lambda o: o.requests_per_second)
    print(f"ratio requests/s webhook / plain endpoint: {spread_text(rps)} (target >= 0.8x: {verdict(rps, 0.8, at_most=False)})")
    p99 = ratio(results, "one host", "plain", lambda o: o.percentile(0.99))
    print(f"ratio p99 latency webhook / plain endpoint: {spread_text(p99)} (target <= 1.5x: {verdict(p99, 1.5)})")
    p50 = ratio(results, "one host", "plain", lambda o: o.percentile(0.5))
    print(f"ratio p50 latency webhook / plain endpoint: {spread_text(p50)} (for information)")
    alone = ratio(singles, "one host", "plain", lambda o: o.percentile(0.5))
    print(f"ratio one client's p50 latency webhook / plain endpoint: {spread_text(alone)} (target <= 2x: {verdict(alone, 2.0)})")
    two = ratio(results, "two hosts", "one host", lambda o: o.requests_per_second)
    print(f"ratio requests/s two hosts / one host: {spread_text(two)} (for information: both share this machine's cores)")


if __name__ == "__main__":
    main()
