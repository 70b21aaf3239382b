"""Personalisation reads: what a page pays to ask whether its user is in a segment.

Data: 1,000,000 memberships in 100 segments of 10,000 random users each (100,000 users,
about 10 segments a user), on SQLite and PostgreSQL, with cdp_bridge's own tables and
indexes. Each user looked up is a different one, so nothing is warm from the last call.

- **first lookup**: the page's ``segments.of_user`` for a new user in a request that holds its
  database connection already (as a page that has run its own queries does: the read
  joins the Flask-SQLAlchemy session's connection), against the strongest plain
  baseline: the same join through the raw driver on a connection it keeps open
  (sqlite3 / psycopg, a prepared statement on PostgreSQL), rows fetched.
- **each further check**: ``cdp_in_segment(name)`` after the first, in the same request.
- **page with 10 checks**: ten ``cdp_in_segment`` calls (the user's segment ids and the
  store version read in one indexed query through SQLAlchemy Core on the session's
  connection, named from the segment catalogue the process keeps at that version, then
  set lookups) against the page a host would write by hand on the same Flask-SQLAlchemy
  session: the three-table join for the user's segment names, a set of the names a check
  may use, ten ``in`` tests. Nothing is kept per user, so a user served before costs the
  same.

Both sides run inside one request context (a page pays for its own anyway; counting it
would dilute the ratios); every call asks for a different user, so nothing is cached.
For comparison it also prints a page whose only query is this read: the request context
and the pool checkout paid on each call, on both sides.

Rounds alternate product and baseline; min / median / max of the ratio are printed.
Usage: python benchmarks/segments_read.py [--rounds 7] [--lookups 300] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from flask import Flask  # noqa: E402
from sqlalchemy import text  # noqa: E402
from timing import alternating_rounds, ratio_spread, spread_text, verdict  # noqa: E402

from cdp_bridge import CDP  # noqa: E402
from cdp_bridge.templating.page import current_page, forget_page  # noqa: E402
from cdp_bridge.templating.tracking import cdp_in_segment  # noqa: E402
from tests.support.postgres_server import PostgresServer  # noqa: E402

SEGMENTS, PER_SEGMENT, USERS = 100, 10_000, 100_000
#: The same read a skeptic would write for the same feature: the user's segments with
#: their metadata, in order.
RAW_SQL = ("SELECT s.identifier, s.name, g.identifier, s.description, s.tags, s.profile_count,"
           " s.source_updated_at, s.last_sequence FROM cdp_segments s"
           " JOIN cdp_segment_groups g ON g.id = s.group_id JOIN cdp_memberships m ON m.segment_id = s.id"
           " WHERE m.user_id = {p} ORDER BY g.identifier, s.identifier")
#: What a check alone needs: names only, in no order.
LEAN_SQL = ("SELECT s.identifier, s.name, g.identifier FROM cdp_memberships m"
            " JOIN cdp_segments s ON s.id = m.segment_id JOIN cdp_segment_groups g ON g.id = s.group_id"
            " WHERE m.user_id = {p}")


def build(url: str) -> Flask:
    app = Flask("segments_read")
    app.config.update(SQLALCHEMY_DATABASE_URI=url, CDP_INLINE_WORKER=False, SECRET_KEY="bench")
    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("shop", "Shop")
        rnd = random.Random(7)
        engine = app.extensions["cdp"].engine
        raw = engine.raw_connection()
        cursor = raw.cursor()
        p = "?" if engine.dialect.name == "sqlite" else "%s"
        cursor.executemany(
            f"INSERT INTO cdp_segments (id, group_id, identifier, name, tags, created_at, updated_at)"
            f" VALUES ({p}, 1, {p}, {p}, '[\"bench\"]', '2026-01-01', '2026-01-01')",
            [(i, f"s{i:03d}", f"Segment {i}") for i in range(1, SEGMENTS + 1)],
        )
        rows = sorted((segment, f"user-{user:06d}") for segment in range(1, SEGMENTS + 1)
                      for user in rnd.sample(range(USERS), PER_SEGMENT))
        if engine.dialect.name == "sqlite":
            cursor.executemany("INSERT INTO cdp_memberships (segment_id, user_id, created_at) VALUES (?, ?, '2026-01-01')", rows)
        else:
            with cursor.copy("COPY cdp_memberships (segment_id, user_id, created_at) FROM STDIN") as copy:
                for segment, user in rows:
                    copy.write_row((segment, user, "2026-01-01"))
            cursor.execute("ANALYZE")
        raw.commit()
        raw.close()
    return app


def raw_query(url: str, template: str = RAW_SQL) -> Callable[[str], list[Any]]:
    """The baseline: the join on a connection the raw driver keeps open."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        sql = template.format(p="?")
        return lambda user: conn.execute(sql, (user,)).fetchall()
    import psycopg

    pg = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    sql = template.format(p="%s")
    return lambda user: pg.execute(sql, (user,), prepare=True).fetchall()


def measure(name: str, url: str, rounds: int, lookups: int) -> list[str]:
    app = build(url)
    state = app.extensions["cdp"]
    raw, lean = raw_query(url), raw_query(url, LEAN_SQL)
    rnd = random.Random(11)
    users = iter([f"user-{rnd.randrange(USERS):06d}" for _ in range(rounds * lookups * 10)])
    names = ["Segment 1", "s002", "shop/s003", "Segment 4", "s005", "Segment 6", "s007", "shop/Segment 8", "s009", "nope"]

    def new_request() -> None:
        """What a new request starts without: its page (the user and the segments read).
        The hand-written page pays the same, so both sides start alike."""
        forget_page()

    def first_lookup() -> None:
        new_request()
        current_page().segments.of_user(next(users))

    def page_of_ten() -> None:
        user = next(users)
        new_request()
        state.hooks.user_id_loader = lambda: user
        for segment in names:
            cdp_in_segment(segment)

    hand_sql = text(LEAN_SQL.format(p=":user_id"))

    def hand_written_page() -> None:
        """The same feature written by hand on the request's Flask-SQLAlchemy session."""
        user = next(users)
        new_request()
        answer: set[str] = set()
        for identifier, segment_name, group in state.db.session.execute(hand_sql, {"user_id": user}):
            answer.update((identifier, segment_name, f"{group}/{identifier}", f"{group}/{segment_name}"))
        for segment in names:
            segment in answer  # noqa: B015 - the check a page makes

    def alone() -> None:
        with app.test_request_context("/"):
            current_page().segments.of_user(next(users))

    def raw_alone() -> None:
        with app.test_request_context("/"):
            raw(next(users))

    # A page whose only query is this one: the request context, and the pool checkout it
    # brings, are paid on each call, on both sides.
    lone = alternating_rounds({"first": alone, "raw": raw_alone}, rounds, lookups)
    # The usual page, which has queried the database already: one request context for
    # all (counting it would only dilute the ratios). Every call asks for a different
    # user, so nothing is cached.
    with app.test_request_context("/"):
        state.db.session.connection()  # the page's own queries took the connection
        times = alternating_rounds({"first": first_lookup, "raw": lambda: raw(next(users)), "page": page_of_ten,
                                    "hand": hand_written_page, "lean": lambda: lean(next(users))}, rounds, lookups)
        state.hooks.user_id_loader = lambda: "user-000001"
        new_request()
        cdp_in_segment("Segment 1")
        further = alternating_rounds({"check": lambda: cdp_in_segment("shop/Segment 50")}, rounds, lookups * 10)["check"]
    first, page = ratio_spread(times["first"], times["raw"]), ratio_spread(times["page"], times["hand"])
    lone_first = ratio_spread(lone["first"], lone["raw"])
    against_lean = ratio_spread(times["first"], times["lean"])
    raw_us = statistics.median(times["raw"]) * 1e6
    further_us = statistics.median(further) * 1e6
    return [
        f"{name}: raw query {raw_us:.0f} us, first lookup {statistics.median(times['first']) * 1e6:.0f} us, "
        f"page of 10 checks {statistics.median(times['page']) * 1e6:.0f} us, hand-written page on the session "
        f"{statistics.median(times['hand']) * 1e6:.0f} us (medians)",
        f"{name}: ratio first lookup / raw query: {spread_text(first)} (target <= 2x: {verdict(first, 2.0)})",
        f"{name}: each further check: {further_us:.1f} us (median of {rounds} rounds; min {min(further) * 1e6:.1f}, "
        f"max {max(further) * 1e6:.1f}) (target <= 5 us: {'meets' if further_us <= 5 else 'misses'})",
        f"{name}: ratio page with 10 checks / the same page hand-written on the session: {spread_text(page)} "
        f"(target <= 1.1x: {verdict(page, 1.1)})",
        f"{name}: ratio first lookup / a names-only query (3 columns, no order; "
        f"{statistics.median(times['lean']) * 1e6:.0f} us): {spread_text(against_lean)} (for comparison)",
        f"{name}: a page whose only query this is (request context and pool checkout on both sides): "
        f"{statistics.median(lone['first']) * 1e6:.0f} us vs {statistics.median(lone['raw']) * 1e6:.0f} us, "
        f"ratio {spread_text(lone_first)} (for comparison)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lookups", type=int, default=300, help="calls per side per round")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    wanted = args.databases.split(",")
    print(f"{SEGMENTS} segments x {PER_SEGMENT:,} members ({USERS:,} users); {args.rounds} alternating rounds "
          f"of {args.lookups} lookups, a different user each")
    with tempfile.TemporaryDirectory() as folder:
        if "sqlite" in wanted:
            for line in measure("SQLite", f"sqlite:///{folder}/read.sqlite3", args.rounds, args.lookups):
                print(line, flush=True)
        if "postgresql" in wanted:
            server = PostgresServer.create()
            try:
                for line in measure("PostgreSQL", server.create_database(), args.rounds, args.lookups):
                    print(line, flush=True)
            finally:
                server.destroy()


if __name__ == "__main__":
    main()
