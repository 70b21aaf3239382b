"""One schema upgrade at a time per database, and what a killed one left behind.

Two ``flask cdp upgrade-db`` at once (two hosts deploying together, a unit and a hand)
would both create or alter the same tables: on PostgreSQL the second fails half-way on
a catalogue's unique key. So an upgrade holds a lock for its whole run: a session-level
advisory lock on PostgreSQL, released by the server when the process dies, and on SQLite
an exclusive ``flock`` on a file beside the database, released by the kernel likewise.
A second run says which holds it and waits for it, then finds nothing left to do.

On SQLite, Alembic's batch mode rebuilds a table through ``_alembic_tmp_<table>``, which
SQLite's driver creates outside the revision's transaction: a run killed while the rows
are copied leaves it behind, and every later run fails on it. Such a table of one of
cdp_bridge's own tables is dropped before the upgrade (the copy in it was rolled back
with its transaction; the table itself is whole); nothing else is ever touched.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, inspect, text

from ..errors import CDPError

#: The advisory lock's key on PostgreSQL: any number, the same in every process ("cdpupgr").
ADVISORY_KEY = 0x63647075
#: The prefix Alembic's batch mode gives the copy of a table it rebuilds.
BATCH_PREFIX = "_alembic_tmp_"


@contextmanager
def upgrade_lock(engine: Engine, report: Callable[[str], None]) -> Iterator[None]:
    """Hold the database's upgrade lock while the block runs, waiting for another holder
    (``report`` hears who it is)."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine, report):
            yield
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with _file_lock(f"{engine.url.database}.cdp-upgrade-lock", report):
            yield
    else:
        yield


@contextmanager
def _advisory_lock(engine: Engine, report: Callable[[str], None]) -> Iterator[None]:
    with engine.connect() as conn:
        if not conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}).scalar():
            holder = conn.execute(text(
                "SELECT a.pid, to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS') FROM pg_locks l"
                " JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = :key"),
                {"key": ADVISORY_KEY}).first()
            who = f"PostgreSQL session {holder[0]}, connected {holder[1]}" if holder else "a session that just ended"
            report(f"another upgrade-db is upgrading this database ({who}); waiting for it to finish")
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
        conn.commit()  # the lock is the session's: no transaction stays open meanwhile
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
            conn.commit()


@contextmanager
def _file_lock(path: str, report: Callable[[str], None]) -> Iterator[None]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
            report(f"another upgrade-db (process {holder}) is upgrading this database; waiting for it to finish")
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode("ascii"), 0)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def drop_batch_leftovers(connection: Connection, own_tables: set[str], report: Callable[[str], None]) -> None:
    """Drop the ``_alembic_tmp_*`` copies of cdp_bridge's own tables that a killed SQLite
    upgrade left (see the module's docstring). A copy whose table is gone is not dropped:
    it may then hold the only rows, and the upgrade stops, saying so."""
    if connection.dialect.name != "sqlite":
        return
    names = set(inspect(connection).get_table_names())
    for name in sorted(names):
        table = name.removeprefix(BATCH_PREFIX)
        if not name.startswith(BATCH_PREFIX) or table not in own_tables:
            continue
        if table not in names:
            raise CDPError(f"{name} is left from an upgrade that was stopped, and {table} is missing: it may hold the only"
                           f" copy of {table}'s rows. Rename it to {table} by hand (ALTER TABLE {name} RENAME TO {table}),"
                           " then run upgrade-db again")
        connection.execute(text(f'DROP TABLE "{name}"'))
        report(f"dropped {name}, left by an upgrade that was stopped part-way (its rows are still in {table})")
