"""The back office on a segment of 1,000,000 members, on PostgreSQL (not a test).

Each page through the app (Flask's test client: the whole request, guard, store read and
template, without a socket), 5 alternating rounds, against the strongest plain
equivalent: a bare view of the same app that runs the same one query on a raw psycopg
connection kept open (prepared) and renders the same list. Pages: the group's page
(its segments with their member counts), the members' first page, a page 500,000 deep
(``after=``), the page before it (``before=``), and a jump to a user id (``at=``).
Target: each page at most 50 ms (the median). For the before, the queries the back
office ran until now: ``count(*)`` of the segment, and ``OFFSET 500000``.

    .venv/bin/python benchmarks/back_office.py [--rounds N] [--requests N] [--members N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flask import Flask, render_template_string
from timing import alternating_rounds, ratio_spread, spread_text

from cdp_bridge import CDP
from tests.support.postgres_server import PostgresServer

LIST = "<ul>{% for id in ids %}<li><a href='/u?user_id={{ id }}'>{{ id }}</a></li>{% endfor %}</ul>"
KEYSET = ("SELECT user_id FROM cdp_memberships WHERE segment_id = %s AND user_id > %s ORDER BY user_id LIMIT 51")
SEGMENTS = ("SELECT s.identifier, s.name, s.member_count FROM cdp_segments s JOIN cdp_segment_groups g"
            " ON g.id = s.group_id WHERE g.identifier = %s ORDER BY s.identifier LIMIT 51")


def site(url: str, members: int) -> tuple[Flask, int]:
    app = Flask("back_office_bench")
    app.config.update(SECRET_KEY="bench", SQLALCHEMY_DATABASE_URI=url, CDP_INLINE_WORKER=False)
    cdp = CDP(app)
    cdp.admin_guard(lambda: True)
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("shop", "Shop")
        for number in range(20):
            cdp.store.add_members("shop", f"small{number:02d}", [f"u{n:07d}" for n in range(number, 1000, 7)])
        started = time.perf_counter()
        cdp.store.replace_members("shop", "big", [f"u{n:07d}" for n in range(members)])
        print(f"{members:,} members stored in {time.perf_counter() - started:.1f} s (the store's own replace)")
        engine = app.extensions["cdp"].engine
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
            segment_id = conn.exec_driver_sql("SELECT id FROM cdp_segments WHERE identifier = 'big'").scalar()
    import psycopg

    raw = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

    @app.get("/plain/members")
    def plain_members() -> str:
        from flask import request

        ids = [row[0] for row in raw.execute(KEYSET, (segment_id, request.args["after"]), prepare=True)]
        return render_template_string(LIST, ids=ids[:50])

    @app.get("/plain/group")
    def plain_group() -> str:
        rows = raw.execute(SEGMENTS, ("shop",), prepare=True).fetchall()
        return render_template_string("<table>{% for r in rows %}<tr><td>{{ r[0] }}</td><td>{{ r[1] }}</td>"
                                      "<td>{{ r[2] }}</td></tr>{% endfor %}</table>", rows=rows[:50])

    return app, segment_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=20, help="requests per page per round")
    parser.add_argument("--members", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; PostgreSQL; {args.rounds} alternating rounds of {args.requests} requests")
    server = PostgresServer.create()
    try:
        url = server.create_database()
        app, segment_id = site(url, args.members)
        client = app.test_client()
        middle, base = f"u{args.members // 2:07d}", "/cdp/admin/groups/shop/members?segment=big"
        pages = {
            "group page": "/cdp/admin/groups/shop",
            "members, first page": base,
            f"members after {middle}": f"{base}&after={middle}",
            f"members before {middle}": f"{base}&before={middle}",
            f"jump to {middle}": f"{base}&at={middle}",
        }
        plain = {"group page": "/plain/group"}
        for path in pages.values():
            response = client.get(path)
            assert response.status_code == 200, (path, response.status_code)
        body = client.get(pages[f"members after {middle}"]).get_data(as_text=True)
        assert f"{args.members:,} members" in client.get(base).get_data(as_text=True)
        assert f"u{args.members // 2 + 1:07d}" in body and middle not in body.split("</form>")[1]
        for name, path in pages.items():
            baseline = plain.get(name, f"/plain/members?after={middle}")
            times = alternating_rounds({"page": lambda p=path: client.get(p), "plain": lambda b=baseline: client.get(b)},
                                       args.rounds, args.requests)
            median = statistics.median(times["page"]) * 1e3
            print(f"{name}: {median:.1f} ms (min {min(times['page']) * 1e3:.1f}, max {max(times['page']) * 1e3:.1f};"
                  f" target <= 50 ms: {'meets' if median <= 50 else 'MISSES'}); plain view with the same query:"
                  f" {statistics.median(times['plain']) * 1e3:.1f} ms; ratio {spread_text(ratio_spread(times['page'], times['plain']))}")
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as raw:
            for label, sql in (("count(*) of the segment, as the group page ran it on every view",
                                "SELECT count(*) FROM cdp_memberships WHERE segment_id = %s"),
                               ("OFFSET 500000, as the members' pages ran it",
                                "SELECT user_id FROM cdp_memberships WHERE segment_id = %s ORDER BY user_id"
                                " OFFSET 500000 LIMIT 51")):
                spent = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    raw.execute(sql, (segment_id,)).fetchall()
                    spent.append(time.perf_counter() - started)
                print(f"before, for comparison: {label}: {statistics.median(spent) * 1e3:.0f} ms (median of {args.rounds})")
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
