"""Making a segment's members exactly a list that arrives in chunks (a reconcile's
million members), without holding the list: each chunk goes into a temporary staging
table, and the difference is applied in the database at the end, in the caller's
transaction (under the same segment lock as a delivery's replace).

PostgreSQL: ``COPY`` into a temporary table dropped at commit, then one anti-join
``DELETE`` and one anti-join ``INSERT``. SQLite: ``INSERT OR IGNORE`` into a temporary
table keyed on the id, then the same two statements. Other databases collect the ids and
use the ordinary replace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from . import history, membership
from .bulk import copy_text, driver_cursor
from .changes import current as recorded_changes
from .tables import CDPTables, utcnow

STAGING = "cdp_reconcile_ids"


@dataclass(frozen=True)
class ReplaceCounts:
    added: int
    removed: int
    unchanged: int


class StreamedReplace:
    """Feed the wanted ids (:meth:`feed`, de-duplicated here), then :meth:`finish`."""

    def __init__(self, conn: Connection, tables: CDPTables, segment_id: int) -> None:
        self.conn = conn
        self.tables = tables
        self.segment_id = segment_id
        self.dialect = conn.dialect.name if conn.dialect.driver in ("psycopg", "pysqlite") else "other"
        self._collected: list[str] = []
        self._cursor: Any = None
        if self.dialect == "postgresql":
            self._cursor = driver_cursor(conn)
            self._cursor.execute(f"CREATE TEMPORARY TABLE {STAGING} (user_id VARCHAR(255) NOT NULL) ON COMMIT DROP")
        elif self.dialect == "sqlite":
            self._cursor = driver_cursor(conn)
            self._cursor.execute(f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING} (user_id TEXT PRIMARY KEY)")
            self._cursor.execute(f"DELETE FROM temp.{STAGING}")

    def feed(self, user_ids: Sequence[str]) -> None:
        if not user_ids:
            return
        if self.dialect == "postgresql":
            with self._cursor.copy(f"COPY {STAGING} (user_id) FROM STDIN") as copy:
                copy.write(copy_text(user_ids))
        elif self.dialect == "sqlite":
            self._cursor.executemany(f"INSERT OR IGNORE INTO temp.{STAGING} (user_id) VALUES (?)",
                                     [(user_id,) for user_id in user_ids])
        else:
            self._collected.extend(user_ids)

    def finish(self) -> ReplaceCounts:
        """Apply the difference; the counts of what changed, and of the wanted ids already members."""
        if self.dialect == "other":
            wanted = list(dict.fromkeys(self._collected))
            added, removed = membership.replace_members(self.conn, self.tables, self.segment_id, wanted)
            return ReplaceCounts(added, removed, len(wanted) - added)
        members, segment, cursor = self.tables.memberships.name, self.segment_id, self._cursor
        changes = recorded_changes()
        returning = " RETURNING user_id" if changes is not None else ""
        if self.dialect == "postgresql":
            cursor.execute(f"ANALYZE {STAGING}")  # without statistics the planner may nest-loop the anti-joins
            cursor.execute(f"DELETE FROM {members} m WHERE m.segment_id = %s AND NOT EXISTS"
                           f" (SELECT 1 FROM {STAGING} s WHERE s.user_id = m.user_id){returning}", (segment,))
            removed_ids = [row[0] for row in cursor.fetchall()] if returning else None
            removed = int(cursor.rowcount)
            cursor.execute(f"INSERT INTO {members} (segment_id, user_id, created_at) SELECT DISTINCT %s, s.user_id, %s"
                           f" FROM {STAGING} s WHERE NOT EXISTS (SELECT 1 FROM {members} m WHERE m.segment_id = %s"
                           f" AND m.user_id = s.user_id) ON CONFLICT DO NOTHING{returning}", (segment, utcnow(), segment))
            added_ids = [row[0] for row in cursor.fetchall()] if returning else None
            added = int(cursor.rowcount)
            cursor.execute(f"SELECT count(DISTINCT user_id) FROM {STAGING}")
        else:
            cursor.execute(f"DELETE FROM {members} WHERE segment_id = ? AND user_id NOT IN"
                           f" (SELECT user_id FROM temp.{STAGING}){returning}", (segment,))
            removed_ids = [row[0] for row in cursor.fetchall()] if returning else None
            removed = len(removed_ids) if removed_ids is not None else int(cursor.rowcount)
            now = utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
            cursor.execute(f"INSERT OR IGNORE INTO {members} (segment_id, user_id, created_at)"
                           f" SELECT ?, user_id, ? FROM temp.{STAGING} WHERE true{returning}", (segment, now))
            added_ids = [row[0] for row in cursor.fetchall()] if returning else None
            added = len(added_ids) if added_ids is not None else int(cursor.rowcount)
            cursor.execute(f"SELECT count(*) FROM temp.{STAGING}")
        row = cursor.fetchone()
        distinct = int(row[0]) if row is not None else 0
        if self.dialect == "sqlite":
            cursor.execute(f"DELETE FROM temp.{STAGING}")  # the temporary table lives as long as the connection
        history.count_members(self.conn, self.tables, segment, added - removed)
        if changes is not None:
            changes.note(self.conn, self.tables, segment, added=added_ids or [], removed=removed_ids or [])
        return ReplaceCounts(added, removed, distinct - added)
