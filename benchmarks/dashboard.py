"""The back office dashboard on 1,000,000 members in 100 segments with 90 days of history,
on PostgreSQL (not a test).

The history is the heaviest the writers can leave: every segment's count changed every
hour of the 90 days (an hour's and a day's figure each), and every counted series has a
figure every hour. Each page over real HTTP (werkzeug's threaded server on loopback, a
kept-alive connection): the whole request, guard, four statements and the SVG template.
5 alternating rounds against the strongest plain equivalent a skeptic would write in the
same app: prepared queries on a raw psycopg connection kept open, reading the same
figures from the same table and index (the page's segments with each one's last figure
before the period, the period's figures, the counted series), rendered as a bare table
of numbers. Target (issue 43):
each page at most 50 ms (the median).

    .venv/bin/python benchmarks/dashboard.py [--rounds N] [--requests N] [--members N] [--segments N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import urllib3
from flask import Flask, render_template_string, request
from timing import alternating_rounds, ratio_spread, spread_text
from werkzeug.serving import WSGIRequestHandler, make_server

from cdp_bridge import CDP
from cdp_bridge.store import history
from cdp_bridge.store.tables import utcnow
from tests.support.postgres_server import PostgresServer

DAYS = 90
PLAIN_TABLE = ("<table>{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>{% endfor %}"
               "</table>")
# What a skeptic writes on PostgreSQL: the page's segments, each one's last figure before
# the period (a LATERAL probe of the key's index), and the period's figures.
PLAIN_SEGMENTS = (
    "SELECT s.id, g.identifier, s.identifier, s.name, s.member_count, c.value FROM cdp_segments s"
    " JOIN cdp_segment_groups g ON g.id = s.group_id"
    " LEFT JOIN LATERAL (SELECT value FROM cdp_history h WHERE h.series = 'members' AND h.subject = s.id"
    " AND h.period = %(period)s AND h.bucket < %(start)s ORDER BY h.bucket DESC LIMIT 1) c ON true"
    " ORDER BY g.identifier, s.identifier LIMIT 100")
PLAIN_MEMBERS = ("SELECT subject, bucket, value FROM cdp_history WHERE series = 'members' AND subject = ANY(%(ids)s)"
                 " AND period = %(period)s AND bucket >= %(start)s")
PLAIN_COUNTS = ("SELECT series, bucket, value FROM cdp_history WHERE subject = 0 AND period = %(period)s"
                " AND bucket >= %(start)s ORDER BY series, bucket")


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: object) -> None:
        """No line a request: the terminal keeps the figures."""


def site(url: str, members: int, segments: int) -> Flask:
    app = Flask("dashboard_bench")
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=url, CDP_INLINE_WORKER=False)
    cdp = CDP(app)
    cdp.admin_guard(lambda: True)
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("shop", "Shop")
        started = time.perf_counter()
        each = members // segments
        for number in range(segments):
            cdp.store.replace_members("shop", f"segment{number:03d}", [f"u{n:07d}" for n in range(number * each,
                                                                                               (number + 1) * each)])
        print(f"{members:,} members in {segments} segments stored in {time.perf_counter() - started:.1f} s")
        engine = app.extensions["cdp"].engine
        now = utcnow()
        first_hour = history.bucket_start(history.HOUR, now) - timedelta(days=DAYS)
        first_day = history.bucket_start(history.DAY, now) - timedelta(days=DAYS)
        counted = [series for series in (history.DELIVERIES_APPLIED, history.DELIVERIES_FAILED, history.REJECTED_IDS,
                                         history.TRACKING_SENT, history.TRACKING_FAILED, history.TRACKING_DROPPED,
                                         history.ERASURES_REQUESTED, history.ERASURES_ACCEPTED, history.ERASURES_GIVEN_UP,
                                         history.RECONCILES_OK, history.RECONCILES_FAILED, history.RECONCILE_CHANGES)]
        with engine.begin() as conn:  # the history the writers would have left: a figure every hour, every series
            conn.exec_driver_sql("DELETE FROM cdp_history")
            for period, first, step, count in (("hour", first_hour, "1 hour", DAYS * 24 + 1),
                                               ("day", first_day, "1 day", DAYS + 1)):
                conn.exec_driver_sql(
                    "INSERT INTO cdp_history (series, subject, period, bucket, value)"
                    " SELECT 'members', s.id, %(period)s, %(first)s + n * %(step)s::interval,"
                    " s.member_count - 500 + (n * 37 + s.id) %% 1000 FROM cdp_segments s, generate_series(0, %(last)s) n",
                    {"period": period, "first": first, "step": step, "last": count - 1})
                conn.exec_driver_sql(
                    "INSERT INTO cdp_history (series, subject, period, bucket, value)"
                    " SELECT series, 0, %(period)s, %(first)s + n * %(step)s::interval, (n * 13) %% 97"
                    " FROM unnest(%(series)s::varchar[]) series, generate_series(0, %(last)s) n",
                    {"period": period, "first": first, "step": step, "last": count - 1, "series": counted})
            rows = conn.exec_driver_sql("SELECT count(*) FROM cdp_history").scalar()
            conn.exec_driver_sql("ANALYZE")
        print(f"history: {rows:,} rows ({DAYS} days, every hour and day of every segment and series)")
    import psycopg

    raw = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

    @app.get("/plain/dashboard")
    def plain_dashboard() -> str:
        period, _ = history.PERIODS[request.args["period"]]
        start = history.bucket_starts(request.args["period"])[0]
        segments = raw.execute(PLAIN_SEGMENTS, {"period": period, "start": start}, prepare=True).fetchall()
        members = raw.execute(PLAIN_MEMBERS, {"period": period, "start": start, "ids": [row[0] for row in segments]},
                              prepare=True).fetchall()
        counts = raw.execute(PLAIN_COUNTS, {"period": period, "start": start}, prepare=True).fetchall()
        return render_template_string(PLAIN_TABLE, rows=segments + members + counts)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10, help="requests per page per round")
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; PostgreSQL; {args.rounds} alternating rounds of {args.requests} requests")
    server = PostgresServer.create()
    try:
        app = site(server.create_database(), args.members, args.segments)
        http = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
        threading.Thread(target=http.serve_forever, daemon=True).start()
        pool = urllib3.HTTPConnectionPool("127.0.0.1", http.server_port, maxsize=1)

        def get(path: str) -> bytes:
            answer = pool.request("GET", path)
            assert answer.status == 200, (path, answer.status)
            return answer.data

        page = get("/cdp/admin/?period=30d").decode()
        assert page.count('class="sparkline"') == args.segments and page.count('class="bars"') == 12
        csv_rows = get("/cdp/admin/dashboard.csv?chart=members&period=30d").decode().count("\n") - 1
        assert csv_rows == args.segments * 30, csv_rows
        for period in history.PERIODS:
            pages = {f"dashboard, {period}": f"/cdp/admin/?period={period}",
                     f"members CSV, {period}": f"/cdp/admin/dashboard.csv?chart=members&period={period}"}
            for name, path in pages.items():
                times = alternating_rounds({"page": lambda p=path: get(p),
                                            "plain": lambda q=period: get(f"/plain/dashboard?period={q}")},
                                           args.rounds, args.requests)
                median = statistics.median(times["page"]) * 1e3
                print(f"{name}: {median:.1f} ms (min {min(times['page']) * 1e3:.1f}, max"
                      f" {max(times['page']) * 1e3:.1f}; target <= 50 ms: {'meets' if median <= 50 else 'MISSES'});"
                      f" plain view of the same figures: {statistics.median(times['plain']) * 1e3:.1f} ms;"
                      f" ratio {spread_text(ratio_spread(times['page'], times['plain']))}")
        http.shutdown()
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
