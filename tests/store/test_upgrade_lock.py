"""``flask cdp upgrade-db`` killed part-way, and run twice at once (issue 36): real
``flask`` processes, a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, insert, text

from cdp_bridge.store import schema
from cdp_bridge.store.upgrade_lock import upgrade_lock
from tests.support import schema_0_1
from tests.support.polling import wait_until
from tests.support.processes import run_flask, start_flask, write_app_module

pytestmark = pytest.mark.slow

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MEMBERS = 250_000


def make_0_1_sqlite(path: Path, members: int) -> None:
    """A 0.1 database (no version table: recognised, stamped, then upgraded through every
    revision, 0003's rebuild of cdp_memberships among them) with ``members`` memberships."""
    engine = create_engine(f"sqlite:///{path}")
    tables = schema_0_1.define_tables(MetaData())
    tables.segment_groups.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(tables.segment_groups), [{"identifier": "shop", "name": "Shop", "created_at": WHEN,
                                                      "updated_at": WHEN}])
        conn.execute(insert(tables.segments), [{"group_id": 1, "identifier": f"seg{n}", "name": f"Segment {n}",
                                                "created_at": WHEN, "updated_at": WHEN} for n in range(3)])
    engine.dispose()
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO cdp_memberships (segment_id, user_id, created_at) VALUES (?, ?, ?)",
                         ((1 + n % 3, f"user-{n:07d}", WHEN.isoformat(sep=" ")) for n in range(members)))


def tables_of(path: Path) -> set[str]:
    with sqlite3.connect(path, timeout=0.05) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_a_sqlite_upgrade_killed_mid_revision_is_rerun_to_the_end(tmp_path: Path) -> None:
    database = tmp_path / "shop.sqlite3"
    make_0_1_sqlite(database, MEMBERS)
    module = write_app_module(tmp_path, f"sqlite:///{database}", CDP_INLINE_WORKER=False)
    upgrading = start_flask(tmp_path, module, "cdp", "upgrade-db")

    def copying() -> bool:  # revision 0003 has made its copy of cdp_memberships and fills it
        try:
            return "_alembic_tmp_cdp_memberships" in tables_of(database)
        except sqlite3.OperationalError:  # locked for a moment by the upgrade
            return False

    wait_until(lambda: copying() or upgrading.poll() is not None, "the upgrade reached revision 0003", seconds=120,
               every=0.005)
    upgrading.send_signal(signal.SIGKILL)
    upgrading.wait(10)
    assert "_alembic_tmp_cdp_memberships" in tables_of(database), "the upgrade finished before it could be killed"
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT version_num FROM cdp_alembic_version").fetchall() == [("0002_rejected_count",)]

    rerun = run_flask(tmp_path, module, "cdp", "upgrade-db", timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert ("dropped _alembic_tmp_cdp_memberships, left by an upgrade that was stopped part-way (its rows are still in"
            " cdp_memberships)") in rerun.stdout
    assert f"cdp_bridge's schema is at revision {schema.head_revision()}." in rerun.stdout
    assert "_alembic_tmp_cdp_memberships" not in tables_of(database)
    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT user_id) FROM cdp_memberships").fetchone() == (MEMBERS, MEMBERS)
        assert conn.execute("SELECT version_num FROM cdp_alembic_version").fetchall() == [(schema.head_revision(),)]


def test_a_batch_copy_of_a_table_that_is_not_cdp_bridges_is_left_alone(tmp_path: Path) -> None:
    database = tmp_path / "shop.sqlite3"
    make_0_1_sqlite(database, 10)
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE _alembic_tmp_orders (id INTEGER)")  # the host's own migration's
        conn.execute("CREATE TABLE _alembic_tmp_cdp_memberships (segment_id INTEGER)")
    module = write_app_module(tmp_path, f"sqlite:///{database}", CDP_INLINE_WORKER=False)
    result = run_flask(tmp_path, module, "cdp", "upgrade-db")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "_alembic_tmp_orders" in tables_of(database) and "_alembic_tmp_cdp_memberships" not in tables_of(database)


def test_a_batch_copy_whose_table_is_missing_is_not_dropped(tmp_path: Path) -> None:
    """Then the copy may be the only one of the rows: the upgrade stops and says what to do."""
    database = tmp_path / "shop.sqlite3"
    make_0_1_sqlite(database, 10)
    with sqlite3.connect(database) as conn:
        conn.execute("ALTER TABLE cdp_memberships RENAME TO _alembic_tmp_cdp_memberships")
    module = write_app_module(tmp_path, f"sqlite:///{database}", CDP_INLINE_WORKER=False)
    result = run_flask(tmp_path, module, "cdp", "upgrade-db")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "_alembic_tmp_cdp_memberships is left from an upgrade that was stopped, and cdp_memberships is missing" in (
        result.stdout + result.stderr)
    assert "_alembic_tmp_cdp_memberships" in tables_of(database)


def test_a_second_sqlite_upgrade_waits_for_the_first_naming_it(tmp_path: Path) -> None:
    database = tmp_path / "shop.sqlite3"
    make_0_1_sqlite(database, 10)
    module = write_app_module(tmp_path, f"sqlite:///{database}", CDP_INLINE_WORKER=False)
    engine = create_engine(f"sqlite:///{database}")
    with upgrade_lock(engine, lambda line: None):  # a first upgrade, still running
        second = start_flask(tmp_path, module, "cdp", "upgrade-db")
        wait_until(lambda: second.poll() is not None or _said(second, "waiting"), "the second says it waits")
        assert second.poll() is None, "the second upgrade did not wait"
        with sqlite3.connect(database) as conn:
            assert "cdp_alembic_version" not in {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    out = _finish(second)
    assert second.returncode == 0, out
    assert f"another upgrade-db (process {os.getpid()}) is upgrading this database; waiting for it to finish" in out
    assert f"cdp_bridge's schema is at revision {schema.head_revision()}." in out


_OUTPUT: dict[int, tuple[list[str], threading.Thread]] = {}


def _said(process: subprocess.Popen, words: str) -> bool:
    """Whether the process printed ``words`` yet (its output read line by line in a thread)."""
    if process.pid not in _OUTPUT:
        lines: list[str] = []

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        _OUTPUT[process.pid] = lines, reader
    return any(words in line for line in _OUTPUT[process.pid][0])


def _finish(process: subprocess.Popen) -> str:
    """Its whole output once it has ended (read by :func:`_said`'s thread)."""
    process.wait(120)
    lines, reader = _OUTPUT.pop(process.pid)
    reader.join(10)
    return "".join(lines)


def test_two_postgresql_upgrades_at_once_both_succeed_one_doing_the_work(tmp_path: Path, postgres_server) -> None:
    url = postgres_server.create_database()
    module = write_app_module(tmp_path, url, CDP_INLINE_WORKER=False)
    runs = [start_flask(tmp_path, module, "cdp", "upgrade-db") for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    created = [out for out in outputs if "created cdp_bridge's tables at revision" in out]
    assert len(created) == 1, outputs
    assert all(f"cdp_bridge's schema is at revision {schema.head_revision()}" in out for out in outputs)


def test_a_second_postgresql_upgrade_waits_for_the_first_naming_it(tmp_path: Path, postgres_server) -> None:
    url = postgres_server.create_database()
    module = write_app_module(tmp_path, url, CDP_INLINE_WORKER=False)
    engine = create_engine(url)
    try:
        with upgrade_lock(engine, lambda line: None):  # a first upgrade, still running
            with engine.connect() as conn:
                holder = conn.execute(text("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted")).scalar()
            second = start_flask(tmp_path, module, "cdp", "upgrade-db")
            wait_until(lambda: second.poll() is not None or _said(second, "waiting"), "the second says it waits")
            assert second.poll() is None, "the second upgrade did not wait"
            with engine.connect() as conn:
                assert conn.execute(text("SELECT to_regclass('cdp_segments')")).scalar() is None
        out = _finish(second)
    finally:
        engine.dispose()
    assert second.returncode == 0, out
    assert f"another upgrade-db is upgrading this database (PostgreSQL session {holder}, connected " in out
    assert "created cdp_bridge's tables at revision" in out
