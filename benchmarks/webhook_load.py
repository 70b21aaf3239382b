"""The webhook under load, against a bare Flask endpoint under the same gunicorn (not a test).

gunicorn (gthread, 2 workers x 16 threads) and PostgreSQL on loopback; 50 concurrent
clients send 10,000 deliveries (mixed sizes, duplicates, out-of-order sequences) while two
queue workers drain what is queued. Then the same clients send the same bodies to a bare
Flask endpoint that only reads the body and answers JSON. Prints requests per second and
p50/p99 latency for both, and the ratios.

    .venv/bin/python benchmarks/webhook_load.py [--deliveries N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.load import SITE_CONFIG, Stack, bare_endpoint, make_workload, send_all
from tests.support.postgres_server import PostgresServer
from tests.support.processes import run_flask, write_app_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.deliveries:,} deliveries from 50 clients")
    workload = make_workload(args.deliveries)
    pg = PostgresServer.create()
    try:
        with tempfile.TemporaryDirectory() as folder:
            directory = Path(folder)
            url = pg.create_database()
            module = write_app_module(directory, url, "setup_site", **SITE_CONFIG)
            run_flask(directory, module, "cdp", "init-db")
            run_flask(directory, module, "cdp", "segment-group", "create", "load")
            stack = Stack.start(directory, url)
            try:
                webhook = send_all(stack.url, workload.deliveries, clients=50)
            finally:
                stack.stop()
            bare_url, server = bare_endpoint(directory)
            try:
                bare = send_all(bare_url, workload.deliveries, clients=50, retry=False)
            finally:
                server.terminate()
                server.wait()
    finally:
        pg.destroy()
    print(webhook.summary("webhook"))
    print(bare.summary("bare Flask endpoint"))
    print(f"ratio requests/s webhook / bare: {webhook.requests_per_second / bare.requests_per_second:.2f}x")
    print(f"ratio p50 latency webhook / bare: {webhook.percentile(0.5) / bare.percentile(0.5):.2f}x; "
          f"p99: {webhook.percentile(0.99) / bare.percentile(0.99):.2f}x")


if __name__ == "__main__":
    main()
