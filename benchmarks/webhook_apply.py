"""Applying large audiences through cdp_bridge's domain core, against the raw driver.

For SQLite and PostgreSQL, with shuffled random ids: a 100,000-member ``members``
replace into an empty segment; the same over a segment it half overlaps; a 100,000-id
delta (50,000 adds, 50,000 removes); and a replace that changes 10% of the segment.
Baselines, on a table with the same keys and indexes: a sorted ``executemany``
(SQLite) or sorted ``COPY`` (PostgreSQL) of the same rows; for the 10% replace, a diff,
one ``DELETE`` of the leavers and a sorted insert of the newcomers (on PostgreSQL a COPY from
one escaped buffer, the product's way, so the comparison isolates the rest; both sides
emptied with TRUNCATE, no dead rows). Rounds alternate
every operation; ratios are min / median / max (target: at least 0.5x). The webhook end
to end, HTTP included, is ``webhook_e2e.py``.

    .venv/bin/python benchmarks/webhook_apply.py [--rows N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import ratio_spread, spread_text, verdict

from cdp_bridge.model import AudienceChange
from cdp_bridge.store import define_tables
from cdp_bridge.store.audiences import apply_audience_changes
from cdp_bridge.store.bulk import copy_text
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
        """Empty tables with no dead rows, as the baseline's (TRUNCATE on PostgreSQL)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"TRUNCATE {self.tables.memberships.name}, {self.tables.segments.name}")
            else:
                conn.execute(self.tables.memberships.delete())
                conn.execute(self.tables.segments.delete())
            if members:
                apply_audience_changes(conn, self.tables, 1, [AudienceChange("big", members=tuple(members))])

    def apply(self, change: AudienceChange) -> None:
        with self.engine.begin() as conn:
            apply_audience_changes(conn, self.tables, 1, [change])


def random_ids(count: int, seed: int) -> list[str]:
    """Shuffled random ids: ids in order would hide what a B-tree does with random ones."""
    return [f"{n:012d}" for n in random.Random(seed).sample(range(10**12), count)]


def bench_database(name: str, url: str, raw_connect: Callable[[], Any], rows: int, rounds: int) -> list[str]:
    ids = random_ids(rows, 1)
    half, tenth = rows // 2, rows // 10
    new = random_ids(half, 2)
    overlapping = tuple(ids[half:] + new)
    ten_percent = tuple(ids[tenth:] + new[:tenth])
    scenario = Scenario(url)
    conn = raw_connect()
    raw = RawBaselines(name, conn)
    operations: dict[str, Timed] = {
        "members replace": (lambda: scenario.apply(AudienceChange("big", members=tuple(ids))), scenario.reset),
        "baseline insert": (lambda: raw.insert(ids), raw.truncate),
        "members replace, half overlap": (lambda: scenario.apply(AudienceChange("big", members=overlapping)),
                                          lambda: scenario.reset(ids)),
        "add/remove delta": (lambda: scenario.apply(AudienceChange("big", add=tuple(new), remove=tuple(ids[:half]))),
                             lambda: scenario.reset(ids)),
        "members replace changing 10%": (lambda: scenario.apply(AudienceChange("big", members=ten_percent)),
                                         lambda: scenario.reset(ids)),
        "baseline replace changing 10%": (lambda: raw.replace(ten_percent), lambda: raw.fill(ids)),
    }
    try:
        seconds = {operation: [] for operation in operations}
        for _ in range(rounds):
            for operation, (action, before) in operations.items():
                before()
                started = time.perf_counter()
                action()
                seconds[operation].append(time.perf_counter() - started)
    finally:
        conn.close()
        scenario.engine.dispose()
    lines = [f"{name}: {operation:35s} {rows / statistics.median(values):12,.0f} rows/s"
             for operation, values in seconds.items()]
    comparisons = [("members replace", "baseline insert"), ("members replace, half overlap", "baseline insert"),
                   ("add/remove delta", "baseline insert"), ("members replace changing 10%", "baseline replace changing 10%")]
    for ours, theirs in comparisons:
        spread = ratio_spread(seconds[theirs], seconds[ours])  # throughput: baseline time / ours
        lines.append(f"{name}: ratio {ours} / {theirs}: {spread_text(spread)} "
                     f"(target >= 0.5x: {verdict(spread, 0.5, at_most=False)})")
    return lines


class RawBaselines:
    """What a skeptic writes with the raw driver, on a table with the same keys and indexes:
    a sorted executemany (SQLite) or a sorted COPY (PostgreSQL); a replace as a diff, one
    DELETE of the leavers and a sorted insert of the newcomers."""

    def __init__(self, name: str, conn: Any) -> None:
        self.sqlite = name == "SQLite"
        self.conn = conn
        self.cur = conn.cursor()
        self.cur.execute("DROP TABLE IF EXISTS raw_memberships")
        self.cur.execute(RAW_TABLE)
        self.cur.execute(RAW_INDEX)
        conn.commit()

    def truncate(self) -> None:
        """Empty, with no dead rows left for the next round to write over (PostgreSQL)."""
        self.cur.execute("DELETE FROM raw_memberships" if self.sqlite else "TRUNCATE raw_memberships")
        self.conn.commit()

    def _write(self, ids: list[str]) -> None:
        now = "2026-11-28 10:00:00"
        if self.sqlite:
            self.cur.executemany("INSERT INTO raw_memberships VALUES (1, ?, ?)", [(i, now) for i in sorted(ids)])
        else:
            with self.cur.copy("COPY raw_memberships (segment_id, user_id, created_at) FROM STDIN") as copy_in:
                copy_in.write(copy_text(sorted(ids), before="1\t", after=f"\t{now}"))  # one escaped buffer

    def insert(self, ids: list[str]) -> None:
        self._write(ids)
        self.conn.commit()

    def fill(self, ids: list[str]) -> None:
        self.truncate()
        self.insert(ids)

    def replace(self, wanted: tuple[str, ...]) -> None:
        self.cur.execute("SELECT user_id FROM raw_memberships WHERE segment_id = 1")
        current = {row[0] for row in self.cur.fetchall()}
        keep = set(wanted)
        leavers = sorted(current - keep)
        if self.sqlite:
            self.cur.executemany("DELETE FROM raw_memberships WHERE segment_id = 1 AND user_id = ?", [(i,) for i in leavers])
        else:
            self.cur.execute("DELETE FROM raw_memberships WHERE segment_id = 1 AND user_id = ANY(%s)", (leavers,))
        self._write([i for i in wanted if i not in current])
        self.conn.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each runs every operation once")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; rows per operation: {args.rows:,}, shuffled random ids; "
          f"{args.rounds} alternating rounds, ratios as min / median / max")
    results: list[str] = []
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
    print("\n".join(results))


if __name__ == "__main__":
    main()
