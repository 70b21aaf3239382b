"""Streaming 1,000,000 users to a local fake Streaming API, against the raw driver (not a test).

For SQLite and PostgreSQL: ``flask cdp stream-user-data --no-draft`` reading a users table
through a registered source, against a baseline in the same run that reads the same rows
with the raw driver and POSTs ``json.dumps`` batches of the same items (ids as numbers)
with requests. Sources:

- SQLAlchemy Core ``.mappings()`` (the audit's);
- SQLAlchemy Core rows (the same query without ``.mappings()``);
- a model's columns (``select(User.id, User.login, ...)``) through ``session.execute``
  (the docs' way until issue 41's third pass) and on ``session.connection()`` (the docs' way now);
- ORM objects (``select(User)``, the slow way, for comparison of the target);
- the driver's own rows (``sqlite3.Row``, psycopg's ``dict_row``), which shows cdp_bridge's
  own share of the cost.

Each run is a separate process, so its peak memory (max RSS) is its own. The processes
keep compiled bytecode (in a ``__pycache__`` folder of the run's own), as an installed
package has it: without that, a shell with ``PYTHONDONTWRITEBYTECODE=1`` (as this
project's machines have) compiles cdp_bridge's hundred modules from source in every run,
about 0.1 s a run that the baseline, which imports only precompiled modules, never pays.
The site imports psycopg only where its driver source reads PostgreSQL: on SQLite the
baseline does not import it, and a site there would not (issue 41's fifth pass; before,
every SQLite run of cdp_bridge paid about 0.05 s for it).
Targets: at least 0.8x the baseline's records per second (issue 41; it was 0.5x before);
peak memory at 1,000,000 users at most 50 MB above that at 10,000.

    .venv/bin/python benchmarks/export_stream.py [--users N] [--small N] [--databases sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from timing import ratio_spread, spread_text, verdict  # noqa: E402

from tests.support.postgres_server import PostgresServer  # noqa: E402

BATCH = 500

SITE = '''
import os
import sqlite3

from flask import Flask
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from cdp_bridge import CDP

app = Flask("bench_site")
app.config.update(SQLALCHEMY_DATABASE_URI={cdp_url!r}, CDP_INLINE_WORKER=False, CDP_ACCOUNT_NUMBER="12345",
                  CDP_USER_STREAM_ID="bench-stream", CDP_STREAM_API_URL={api!r})
cdp = CDP(app)
users_engine = create_engine({users_url!r})


@cdp.user_source("sqlalchemy")
def users():
    limit = int(os.environ["BENCH_USERS"])
    with users_engine.connect().execution_options(stream_results=True, yield_per=2000) as conn:
        yield from conn.execute(text("SELECT id, login, email, name FROM users ORDER BY id LIMIT :n"), {{"n": limit}}).mappings()


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str]
    email: Mapped[str]
    name: Mapped[str]


@cdp.user_source("orm")
def users_as_models():
    """The ORM way: a model object per user."""
    limit = int(os.environ["BENCH_USERS"])
    with Session(users_engine) as session:
        yield from session.scalars(select(User).order_by(User.id).limit(limit).execution_options(yield_per=2000))


@cdp.user_source("model_columns")
def users_as_model_columns():
    """The docs' way until issue 41's third pass: the model's columns through the session."""
    limit = int(os.environ["BENCH_USERS"])
    with Session(users_engine) as session:
        query = select(User.id, User.login, User.email, User.name).order_by(User.id).limit(limit)
        yield from session.execute(query.execution_options(yield_per=2000))


@cdp.user_source("model_columns_connection")
def users_as_model_columns_on_the_connection():
    """The docs' way: the model's columns as rows on the session's connection, no ORM result."""
    limit = int(os.environ["BENCH_USERS"])
    with Session(users_engine) as session:
        query = select(User.id, User.login, User.email, User.name).order_by(User.id).limit(limit)
        yield from session.connection().execute(query.execution_options(yield_per=2000))


@cdp.user_source("core_rows")
def users_as_core_rows():
    limit = int(os.environ["BENCH_USERS"])
    with users_engine.connect().execution_options(stream_results=True, yield_per=2000) as conn:
        yield from conn.execute(text("SELECT id, login, email, name FROM users ORDER BY id LIMIT :n"), {{"n": limit}})


@cdp.user_source("driver")
def users_from_the_driver():
    limit = int(os.environ["BENCH_USERS"])
    if {kind!r} == "sqlite":
        conn = sqlite3.connect({dsn!r})
        conn.row_factory = sqlite3.Row
        yield from conn.execute("SELECT id, login, email, name FROM users ORDER BY id LIMIT ?", (limit,))
        return
    import psycopg  # here, not at the top: a site on SQLite does not import it, and the baseline there does not
    from psycopg.rows import dict_row

    with psycopg.connect({dsn!r}, row_factory=dict_row) as conn, conn.cursor(name="export") as cursor:
        cursor.itersize = 2000
        cursor.execute("SELECT id, login, email, name FROM users ORDER BY id LIMIT %s", (limit,))
        yield from cursor
'''

BASELINE = '''
import json, os, sys, requests
kind, dsn, api, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if kind == "sqlite":
    import sqlite3; conn = sqlite3.connect(dsn); cur = conn.cursor()
    cur.execute("SELECT id, login, email, name FROM users ORDER BY id LIMIT ?", (limit,))
else:
    import psycopg; conn = psycopg.connect(dsn); cur = conn.cursor(name="stream")
    cur.execute("SELECT id, login, email, name FROM users ORDER BY id LIMIT %s", (limit,))
session = requests.Session()
headers = {"Content-Type": "application/json", "x-streamid": "bench-stream"}
while True:
    rows = cur.fetchmany(BATCH_SIZE)
    if not rows:
        break
    body = json.dumps([{"id": r[0], "login": r[1], "email": r[2], "name": r[3]} for r in rows]).encode()
    session.post(api + "/12345", data=body, headers=headers, timeout=60).raise_for_status()
'''.replace("BATCH_SIZE", str(BATCH))


class Sink(BaseHTTPRequestHandler):
    """Reads each body and answers 200, counting records by commas is not needed."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def measured(command: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{command} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def fill_sqlite(path: str, count: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, login TEXT, email TEXT, name TEXT)")
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?)",
                     ((i, f"user{i}", f"user{i}@example.com", f"User Number {i}") for i in range(1, count + 1)))
    conn.commit()
    conn.close()


def fill_postgres(dsn: str, count: int) -> None:
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE users (id BIGINT PRIMARY KEY, login TEXT, email TEXT, name TEXT)")
        with cur.copy("COPY users FROM STDIN") as copy:
            for i in range(1, count + 1):
                copy.write_row((i, f"user{i}", f"user{i}@example.com", f"User Number {i}"))


def bench(name: str, users_url: str, baseline_dsn: str, folder: str, api: str, total: int, small: int,
          rounds: int) -> None:
    """Each side as its own process: cdp_bridge with both sources, and the baseline."""
    kind = "sqlite" if name == "SQLite" else "postgresql"
    Path(folder, "bench_site.py").write_text(SITE.format(cdp_url=f"sqlite:///{folder}/cdp.sqlite3", api=api,
                                                         users_url=users_url, kind=kind, dsn=baseline_dsn))
    Path(folder, "baseline.py").write_text(BASELINE)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPATH=f"{folder}{os.pathsep}{REPO}", PYTHONPYCACHEPREFIX=os.path.join(folder, "pycache"))
    flask = [str(Path(sys.executable).with_name("flask")), "--app", "bench_site", "cdp", "stream-user-data", "--no-draft",
             "--batch-size", str(BATCH), "--user-content-type"]
    sides = {
        "cdp_bridge, Core .mappings()": flask + ["sqlalchemy"],
        "cdp_bridge, Core rows": flask + ["core_rows"],
        "cdp_bridge, model columns, session": flask + ["model_columns"],
        "cdp_bridge, model columns, connection": flask + ["model_columns_connection"],
        "cdp_bridge, ORM objects": flask + ["orm"],
        "cdp_bridge, driver rows": flask + ["driver"],
        "baseline": [sys.executable, "baseline.py", kind, baseline_dsn, api],
    }
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for count, repeats in ((small, 1), (total, rounds)):
        for _ in range(repeats):  # alternating, so a slow spell of this shared machine hits every side
            for side, command in sides.items():
                args = command + [str(count)] if side == "baseline" else command
                runs.setdefault((side, count), []).append(measured(args, {**env, "BENCH_USERS": str(count)}, folder))
    rate = {side: total / statistics.median(seconds for seconds, _ in runs[side, total]) for side in sides}
    peak = {key: max(rss for _, rss in values) for key, values in runs.items()}
    baseline_seconds = [seconds for seconds, _ in runs["baseline", total]]
    for side in sides:
        if side == "baseline":
            continue
        spread = ratio_spread(baseline_seconds, [seconds for seconds, _ in runs[side, total]])  # throughput ratio
        target = f" (target >= 0.8x: {verdict(spread, 0.8, at_most=False)})"
        print(f"{name}: {side:38} {rate[side]:10,.0f} records/s, baseline {rate['baseline']:10,.0f} records/s; "
              f"ratio {spread_text(spread)}{target}")
    for side in ("cdp_bridge, model columns, connection", "cdp_bridge, ORM objects"):
        growth = peak[side, total] - peak[side, small]
        print(f"{name}: {side} peak RSS {peak[side, small]:.0f} MB at {small:,} users, {peak[side, total]:.0f} MB at "
              f"{total:,}: +{growth:.0f} MB ({'meets' if growth <= 50 else 'misses'} the 50 MB target); "
              f"baseline {peak['baseline', small]:.0f} / {peak['baseline', total]:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="alternating runs of each side at full size")
    parser.add_argument("--databases", default="sqlite,postgresql", help="which to run, comma-separated")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.users:,} users; batches of {BATCH}")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_address[1]}/stream"
    with tempfile.TemporaryDirectory() as folder:
        databases = args.databases.split(",")
        if "sqlite" in databases:
            users_db = os.path.join(folder, "users.sqlite3")
            fill_sqlite(users_db, args.users)
            bench("SQLite", f"sqlite:///{users_db}", users_db, folder, api, args.users, args.small, args.rounds)
        if "postgresql" in databases:
            bench_postgres(folder, api, args)
    server.shutdown()


def bench_postgres(folder: str, api: str, args: argparse.Namespace) -> None:
    """The same comparison on a throwaway PostgreSQL server."""
    pg = PostgresServer.create()
    try:
        url = pg.create_database()
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        fill_postgres(dsn, args.users)
        bench("PostgreSQL", url, dsn, folder, api, args.users, args.small, args.rounds)
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
