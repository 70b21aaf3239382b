"""The webhook end to end: ``POST /cdp/webhook`` until the members are stored.

A delivery adds N shuffled random user ids to a new audience. cdp_bridge receives it
through its real path (WSGI request, credentials, body read, JSON, per-id validation,
the delivery record) and either applies it in the request (inline) or queues it and a
worker applies it (queued: the claim, the stored payload, the apply). The baseline is
what a skeptic would write: a bare endpoint on the same app that does ``json.loads`` of
the same body and writes the sorted ids with ``executemany`` (SQLite) or ``COPY`` from
one escaped buffer (PostgreSQL) into a table with the same keys and indexes. Both go
through Flask's test client, so the transport is the same, and both start each round
from empty tables (TRUNCATE on PostgreSQL: no dead rows on either side).

Rounds alternate product and baseline; each figure is the ratio of throughputs
(baseline time / product time: 1.0x is as fast as the baseline), min / median / max.
Usage: python benchmarks/webhook_e2e.py [--sizes 10000,100000,1000000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from flask import Flask, request  # noqa: E402
from timing import ratio_spread, spread_text, verdict  # noqa: E402

from cdp_bridge import CDP  # noqa: E402
from cdp_bridge.store.bulk import copy_text  # noqa: E402
from tests.support.postgres_server import PostgresServer  # noqa: E402

CLIENT, SECRET = "bench-client", "bench-client-secret-value"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"{CLIENT}:{SECRET}".encode()).decode()}
TARGET = 0.5


def body_of(count: int, seed: int) -> tuple[bytes, str]:
    """A delivery adding ``count`` shuffled random ids to a new audience."""
    rnd = random.Random(seed)
    ids = [f"{n:012d}" for n in rnd.sample(range(10**12), count)]
    audience = f"aud{seed}"
    return json.dumps({"audiences": [{"id": audience, "add": ids}]}).encode(), audience


def make_app(url: str, threshold: int) -> Flask:
    app = Flask("webhook_e2e")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, CDP_INLINE_WORKER=False, CDP_BULK_ASYNC_THRESHOLD=threshold,
                      CDP_WEBHOOK_MAX_BYTES=64 * 1024 * 1024, CDP_ACTIVATION_CLIENT_ID=CLIENT,
                      CDP_ACTIVATION_CLIENT_SECRET=SECRET, CDP_SEGMENT_GROUP_IDENTIFIER="shop")
    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
        if not any(group.identifier == "shop" for group in cdp.store.list_groups()):
            cdp.store.create_group("shop", "Shop")
        engine = app.extensions["cdp"].engine
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bare_memberships (segment_id INTEGER NOT NULL,"
                                 " user_id VARCHAR(255) NOT NULL, created_at TIMESTAMP NOT NULL,"
                                 " PRIMARY KEY (segment_id, user_id))")
            conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_bare_user ON bare_memberships (user_id, segment_id)")

    @app.post("/bare")
    def bare() -> str:
        """The skeptic's endpoint: parse, sort, write."""
        document = json.loads(request.get_data())
        ids = sorted(document["audiences"][0]["add"])
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        raw = app.extensions["cdp"].engine.raw_connection()
        try:
            cursor = raw.cursor()
            if app.extensions["cdp"].engine.dialect.name == "sqlite":
                cursor.executemany("INSERT OR IGNORE INTO bare_memberships VALUES (1, ?, ?)", [(i, now) for i in ids])
            else:
                with cursor.copy("COPY bare_memberships (segment_id, user_id, created_at) FROM STDIN") as copy:
                    copy.write(copy_text(ids, before="1\t", after=f"\t{now}"))  # one escaped buffer
            raw.commit()
        finally:
            raw.close()
        return "ok"

    return app


def product_run(app: Flask, body: bytes, queued: bool) -> Callable[[], None]:
    client = app.test_client()

    def run() -> None:
        answer = client.post("/cdp/webhook", data=body, headers=AUTH, content_type="application/json")
        assert answer.status_code == (202 if queued else 200), answer.get_data(as_text=True)[:300]
        if queued:
            with app.app_context():
                inbox = app.extensions["cdp"].inbox
                delivery_id = inbox.claim("bench")
                assert delivery_id is not None and inbox.process(delivery_id, "bench") == "applied"

    return run


def reset(app: Flask) -> None:
    """Both sides start from empty tables with no dead rows: TRUNCATE on PostgreSQL (a
    DELETE left the baseline writing over dead rows while the product got a new segment)."""
    tables = ("cdp_memberships", "cdp_segments", "cdp_deliveries", "bare_memberships")
    with app.app_context(), app.extensions["cdp"].engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"TRUNCATE {', '.join(tables)}")
        else:
            for table in tables:
                conn.exec_driver_sql(f"DELETE FROM {table}")


def measure(name: str, url: str, sizes: list[int], rounds: int) -> list[str]:
    lines = []
    for size in sizes:
        inline, queued = make_app(url, threshold=size + 1), make_app(url, threshold=1)
        bare_client = inline.test_client()
        times: dict[str, list[float]] = {"inline": [], "queued": [], "baseline": []}
        for round_number in range(rounds):
            body, _ = body_of(size, seed=round_number)
            sides: dict[str, Callable[[], Any]] = {
                "inline": product_run(inline, body, queued=False),
                "queued": product_run(queued, body, queued=True),
                "baseline": lambda client=bare_client, data=body: client.post("/bare", data=data,
                                                                              content_type="application/json"),
            }
            for side, run in sides.items():
                reset(inline)
                started = time.perf_counter()
                run()
                times[side].append(time.perf_counter() - started)
        for mode in ("inline", "queued"):
            spread = ratio_spread(times["baseline"], times[mode])  # throughput ratio: baseline time / product time
            lines.append(
                f"{name} {size:>9,} ids, {mode:6}: {size / statistics.median(times[mode]):>9,.0f} ids/s, baseline "
                f"{size / statistics.median(times['baseline']):>9,.0f} ids/s; ratio {spread_text(spread)} "
                f"(target >= {TARGET}x: {verdict(spread, TARGET, at_most=False)})"
            )
        for app in (inline, queued):
            with app.app_context():
                app.extensions["cdp"].engine.dispose()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    wanted = args.databases.split(",")
    print(f"a new audience of N shuffled random ids; {args.rounds} alternating rounds; Flask test client on both sides")
    with tempfile.TemporaryDirectory() as folder:
        if "sqlite" in wanted:
            for line in measure("SQLite", f"sqlite:///{folder}/e2e.sqlite3", sizes, args.rounds):
                print(line, flush=True)
        if "postgresql" in wanted:
            server = PostgresServer.create()
            try:
                for line in measure("PostgreSQL", server.create_database(), sizes, args.rounds):
                    print(line, flush=True)
            finally:
                server.destroy()


if __name__ == "__main__":
    main()
