"""Applying large audiences, against the raw database driver, in one run (not a test).

For SQLite and PostgreSQL, through cdp_bridge's domain core: a 100,000-member
``members`` replace into an empty segment; the same replace over a segment whose
100,000 members it half overlaps (50,000 removed, 50,000 added); and a 100,000-id delta
(50,000 adds, 50,000 removes) on a 100,000-member segment. Baselines insert the same number of rows into an
equivalent table with the raw driver: ``executemany`` (both), ``COPY`` (PostgreSQL).
Prints rows per second and the ratio to each baseline (target: at least 0.5), each the
median over rounds that run every operation once, in turn.

    .venv/bin/python benchmarks/webhook_apply.py [--rows N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import alternating_medians

from cdp_bridge.model import AudienceChange
from cdp_bridge.store import define_tables
from cdp_bridge.store.audiences import apply_audience_changes
from tests.support.postgres_server import PostgresServer

RAW_TABLE = "CREATE TABLE raw_memberships (segment_id BIGINT NOT NULL, user_id VARCHAR(255) NOT NULL, created_at TIMESTAMP NOT NULL, PRIMARY KEY (segment_id, user_id))"
RAW_INDEX = "CREATE INDEX ix_raw_user ON raw_memberships (user_id, segment_id)"


Timed = tuple[Callable[[], None], Callable[[], None]]  # (action, reset before it)


class Scenario:
    """cdp_bridge's tables and a raw equivalent on one database."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url)
        metadata = sa.MetaData()
        self.tables = define_tables(metadata)
        metadata.create_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(self.tables.segment_groups.insert().values(id=1, identifier="bench", name="bench",
                                                                    created_at=sa.func.now(), updated_at=sa.func.now()))

    def reset(self, members: list[str] | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.tables.memberships.delete())
            conn.execute(self.tables.segments.delete())
            if members:
                apply_audience_changes(conn, self.tables, 1, [AudienceChange("big", members=tuple(members))])

    def apply(self, change: AudienceChange) -> None:
        with self.engine.begin() as conn:
            apply_audience_changes(conn, self.tables, 1, [change])


def bench_database(name: str, url: str, raw_connect: Callable[[], Any], rows: int, rounds: int) -> list[tuple[str, float]]:
    ids = [f"user-{i}" for i in range(rows)]
    half = rows // 2
    delta_add = [f"new-{i}" for i in range(half)]
    overlapping = tuple(ids[half:] + delta_add)
    scenario = Scenario(url)
    conn = raw_connect()
    operations: dict[str, Timed] = {
        "members replace": (lambda: scenario.apply(AudienceChange("big", members=tuple(ids))), scenario.reset),
        "members replace, half overlap": (lambda: scenario.apply(AudienceChange("big", members=overlapping)),
                                          lambda: scenario.reset(ids)),
        "add/remove delta": (lambda: scenario.apply(AudienceChange("big", add=tuple(delta_add), remove=tuple(ids[:half]))),
                             lambda: scenario.reset(ids)),
        **raw_baselines(name, conn, ids),
    }
    try:
        seconds = alternating_medians(operations, rounds)
    finally:
        conn.close()
        scenario.engine.dispose()
    return [(f"{name}: {operation}", rows / value) for operation, value in seconds.items()]


def raw_baselines(name: str, conn: Any, ids: list[str]) -> dict[str, Timed]:
    """The same number of rows inserted into an equivalent table with the raw driver."""
    now = "2026-11-28 10:00:00"
    rows = [(1, user_id, now) for user_id in ids]
    cur = conn.cursor()
    cur.execute("DROP TABLE IF EXISTS raw_memberships")
    cur.execute(RAW_TABLE)
    cur.execute(RAW_INDEX)
    conn.commit()

    def truncate() -> None:
        cur.execute("DELETE FROM raw_memberships")
        conn.commit()

    def executemany() -> None:
        placeholder = "?" if name == "SQLite" else "%s"
        cur.executemany(f"INSERT INTO raw_memberships VALUES ({placeholder}, {placeholder}, {placeholder})", rows)
        conn.commit()

    def copy() -> None:
        with cur.copy("COPY raw_memberships (segment_id, user_id, created_at) FROM STDIN") as copy_in:
            for row in rows:
                copy_in.write_row(row)
        conn.commit()

    baselines = {"baseline executemany": (executemany, truncate)}
    if name == "PostgreSQL":
        baselines["baseline COPY"] = (copy, truncate)
    return baselines


def report(results: list[tuple[str, float]]) -> None:
    by_name = dict(results)
    for label, rate in results:
        print(f"{label:45s} {rate:12,.0f} rows/s")
    for database in ("SQLite", "PostgreSQL"):
        baselines = [(k, v) for k, v in results if k.startswith(f"{database}: baseline")]
        for ours in ("members replace", "members replace, half overlap", "add/remove delta"):
            key = f"{database}: {ours}"
            if key not in by_name:
                continue
            for base_label, base_rate in baselines:
                ratio = by_name[key] / base_rate
                verdict = "meets" if ratio >= 0.5 else "BELOW"
                print(f"ratio {key} / {base_label.split(': ')[1]}: {ratio:.2f}x ({verdict} the 0.5x target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each runs every operation once")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; rows per operation: {args.rows:,}; median of {args.rounds} alternating rounds")
    results: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        sqlite_path = os.path.join(folder, "bench.sqlite3")
        raw_path = os.path.join(folder, "raw.sqlite3")
        results += bench_database("SQLite", f"sqlite:///{sqlite_path}", lambda: sqlite3.connect(raw_path),
                                  args.rows, args.rounds)
    server = PostgresServer.create()
    try:
        url = server.create_database()
        raw_url = url.replace("postgresql+psycopg://", "postgresql://")
        results += bench_database("PostgreSQL", url, lambda: psycopg.connect(raw_url), args.rows, args.rounds)
    finally:
        server.destroy()
    report(results)


if __name__ == "__main__":
    main()
