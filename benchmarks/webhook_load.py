"""The webhook under load, against a bare Flask endpoint under the same gunicorn (not a test).

gunicorn (gthread, 2 workers x 16 threads) and PostgreSQL on loopback; 50 concurrent
clients send N deliveries (mixed sizes, duplicates, out-of-order sequences) while two
queue workers drain what is queued. Then the same clients send the same bodies to a bare
Flask endpoint that only reads the body and answers JSON. That pair is one round; each
round starts on a new database, so every round's webhook sees the same work. Prints
each side's requests per second and p50/p99 latency, and the min / median / max over the
rounds of the ratios.

    .venv/bin/python benchmarks/webhook_load.py [--deliveries N] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import ratio_spread, spread_text

from tests.support.load import SITE_CONFIG, Outcome, Stack, bare_endpoint, make_workload, send_all
from tests.support.postgres_server import PostgresServer
from tests.support.processes import run_flask, write_app_module


def one_round(pg: PostgresServer, deliveries: list, directory: Path) -> tuple[Outcome, Outcome]:
    """The webhook on a new database, then the bare endpoint, with the same bodies."""
    url = pg.create_database()
    module = write_app_module(directory, url, "setup_site", **SITE_CONFIG)
    run_flask(directory, module, "cdp", "init-db")
    run_flask(directory, module, "cdp", "segment-group", "create", "load")
    stack = Stack.start(directory, url)
    try:
        webhook = send_all(stack.url, deliveries, clients=50)
    finally:
        stack.stop()
    bare_url, server = bare_endpoint(directory)
    try:
        bare = send_all(bare_url, deliveries, clients=50, retry=False)
    finally:
        server.terminate()
        server.wait()
    return webhook, bare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2_000, help="deliveries per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.deliveries:,} deliveries from 50 clients a round;"
          f" {args.rounds} alternating rounds (webhook on a new database, then the bare endpoint)")
    workload = make_workload(args.deliveries)
    sides: dict[str, list[Outcome]] = {"webhook": [], "bare": []}
    pg = PostgresServer.create()
    try:
        for number in range(1, args.rounds + 1):
            with tempfile.TemporaryDirectory() as folder:
                webhook, bare = one_round(pg, workload.deliveries, Path(folder))
            print(f"round {number}: " + webhook.summary("webhook"))
            print(f"round {number}: " + bare.summary("bare Flask endpoint"))
            sides["webhook"].append(webhook)
            sides["bare"].append(bare)
    finally:
        pg.destroy()
    for label, figure in [("requests/s", lambda result: result.requests_per_second),
                          ("p50 latency", lambda result: result.percentile(0.5)),
                          ("p99 latency", lambda result: result.percentile(0.99))]:
        ratios = ratio_spread([figure(r) for r in sides["webhook"]], [figure(r) for r in sides["bare"]])
        print(f"ratio {label} webhook / bare: {spread_text(ratios)}")


if __name__ == "__main__":
    main()
