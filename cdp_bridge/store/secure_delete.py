"""A transaction whose deletes leave nothing readable in the database file.

SQLite keeps a deleted row's bytes in the freed page (and in the write-ahead log) until
they are written over; ``PRAGMA secure_delete`` writes zeros over them, and a checkpoint
that truncates the log drops its copies. Used where a person's identifier is deleted
(SPEC section 14). PostgreSQL reclaims a deleted row's space at VACUUM; nothing to do here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine


@contextmanager
def secure_deleting(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction; on SQLite, deletes overwrite what they delete."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        with conn.begin():
            if sqlite:
                conn.exec_driver_sql("PRAGMA secure_delete = ON")
            yield conn
        if sqlite:
            conn.exec_driver_sql("PRAGMA secure_delete = OFF")
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.commit()
