"""The dialects' ON CONFLICT statements, and what building them costs a site at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, Table
from sqlalchemy.dialects import postgresql, sqlite

from cdp_bridge.store.upserts import conflict_insert, insert_skipping_conflicts

REPO = Path(__file__).resolve().parents[2]
TABLE = Table("things", MetaData(), Column("id", Integer, primary_key=True))


def test_each_dialect_with_on_conflict_gets_its_own_insert() -> None:
    assert isinstance(conflict_insert("postgresql", TABLE), postgresql.Insert)
    assert isinstance(conflict_insert("sqlite", TABLE), sqlite.Insert)
    assert conflict_insert("mysql", TABLE) is None
    skipping = insert_skipping_conflicts("postgresql", TABLE, ["id"])
    assert "ON CONFLICT (id) DO NOTHING" in str(skipping.compile(dialect=postgresql.dialect()))
    assert "INSERT IGNORE" in str(insert_skipping_conflicts("mysql", TABLE).compile())


def test_a_site_on_sqlite_never_imports_the_postgresql_dialect(tmp_path) -> None:
    """Every start of a site (each ``flask`` command, each worker) used to import it: about 0.05 s."""
    script = f"""
import sys
from flask import Flask
from cdp_bridge import CDP
from cdp_bridge.store.upserts import insert_skipping_conflicts

app = Flask("site")
app.config.update(SQLALCHEMY_DATABASE_URI="sqlite:///{tmp_path / 'site.sqlite3'}", CDP_INLINE_WORKER=False)
CDP(app)
insert_skipping_conflicts("sqlite", app.extensions["cdp"].tables.deliveries, ["client_id", "request_id"])
print(sorted(name for name in sys.modules if name.startswith("sqlalchemy.dialects.postgresql")))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
