"""Which revision of cdp_bridge's schema a database is at, and bringing it to the newest.

The revisions are Alembic's (:mod:`cdp_bridge.migrations`), with their own version table
``cdp_alembic_version``. A new database is made at the newest revision in one step (the
tables as :mod:`.tables` defines them, then stamped), as Alembic's documentation advises;
an existing one is upgraded revision by revision. A database made by a version without
revisions (0.1, or a development version after it) has no version table: it is
recognised by its shape, stamped at the revision that shape matches, then upgraded. A
database at a revision this code does not know (made by newer code) is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, Engine, MetaData, PrimaryKeyConstraint, String, Table, inspect, text
from sqlalchemy.engine import Inspector

from ..errors import CDPError
from . import membership
from .tables import CDPTables
from .upgrade_lock import drop_batch_leftovers, upgrade_lock

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# Alembic is imported where a revision is read or applied, not with the module: it took
# 100 ms of every process's start (each gunicorn worker, each `flask cdp` command), and
# only the upgrade, downgrade and check commands use it.

log = logging.getLogger("cdp_bridge.schema")

VERSION_TABLE = "cdp_alembic_version"
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
#: How every cdp_bridge message names the command that upgrades.
UPGRADE_COMMAND = "flask cdp upgrade-db"


class SchemaTooNew(CDPError):
    """The database is at a revision this code does not know: newer code made it."""


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database stands: its revision (``None``: no cdp_bridge tables, or
    unversioned), what its shape says when unversioned, and the newest revision."""

    current: str | None
    recognised: str | None
    head: str

    @property
    def is_current(self) -> bool:
        """At the newest revision; or unversioned but of its shape (tables a host made with
        ``db.create_all()``), which ``upgrade-db`` stamps without changing anything."""
        return self.current == self.head or (self.current is None and self.recognised == self.head)

    @property
    def pending(self) -> list[str]:
        """The revisions an upgrade would apply, oldest first."""
        start = self.current or self.recognised
        revisions = list(reversed(list(_scripts().iterate_revisions(self.head, start or "base"))))
        return [script.revision for script in revisions]


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = VERSION_TABLE
    return config


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


#: The version table as Alembic makes it: a new database gets it with its tables.
VERSIONS = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32), nullable=False),
                 PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"))


def current_revision(connection: Connection, inspector: Inspector | None = None) -> str | None:
    """The revision in ``cdp_alembic_version``; ``None`` without that table or its row.
    Read with one query, not through Alembic's context (which logs as it starts)."""
    if not (inspector or inspect(connection)).has_table(VERSION_TABLE):
        return None
    found = connection.scalar(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    return None if found is None else str(found)


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def status(connection: Connection) -> SchemaStatus:
    """The schema status of the database on ``connection``; :class:`SchemaTooNew` if its
    revision is unknown here."""
    inspector = inspect(connection)
    current = current_revision(connection, inspector)
    if current is not None:
        try:
            _scripts().get_revision(current)
        except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown revision
            raise SchemaTooNew(
                f"the database's cdp_bridge schema is at revision {current}, which this version of cdp_bridge does not"
                f" know (its newest is {head_revision()}): it was upgraded by a newer cdp_bridge; run that version, or"
                " downgrade the database with it first") from None
    return SchemaStatus(current, recognise(connection, inspector) if current is None else None, head_revision())


class SchemaGate:
    """Whether this process may write to cdp_bridge's tables: once the schema is found
    current it stays so for this code (revisions only move forward), so the database is
    asked until then, and never after. Until then one ERROR names the command to run."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._current = False
        self._warned = False

    def is_current(self) -> bool:
        if self._current:
            return True
        with self.engine.connect() as connection:
            try:
                found = status(connection)
            except SchemaTooNew as exc:
                self._warn(str(exc))
                return False
        if found.is_current:
            self._current = True
            return True
        self._warn(f"cdp_bridge's tables are at revision {found.current or found.recognised or '(none)'}, not"
                   f" {found.head}: run {UPGRADE_COMMAND}")
        return False

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.error("%s; until then the webhook answers 503 and workers wait", message)


def leave_cdp_tables_out(object_: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """For a host's Flask-Migrate or Alembic: ``Migrate(app, db, include_object=
    cdp_bridge.leave_cdp_tables_out)``. The host's autogenerate then leaves cdp_bridge's
    tables (and their indexes and version table) to ``flask cdp upgrade-db``, so a host's
    migration never creates, alters or drops one of them."""
    table = object_.table.name if type_ in ("index", "column", "unique_constraint", "foreign_key_constraint") else name
    return not (table or "").startswith("cdp_")


def recognise(connection: Connection, inspector: Inspector | None = None) -> str | None:
    """The revision an unversioned database's shape matches; ``None`` when it has no
    cdp_bridge tables. Each revision after the baseline adds one feature; the shape is at
    the last revision whose feature, and every earlier one, is there (``db.create_all()``
    on an old database adds new tables but no new columns: it stays at the old revision,
    and the upgrade adopts the tables it finds)."""
    inspector = inspector or inspect(connection)
    names = set(inspector.get_table_names())
    if "cdp_segment_groups" not in names:
        return None
    delivery_columns = {column["name"] for column in inspector.get_columns("cdp_deliveries")}
    membership_keys = {key["name"] for key in inspector.get_foreign_keys("cdp_memberships")}
    features = [
        ("0002_rejected_count", "rejected_count" in delivery_columns),
        ("0003_drop_memberships_fk", "fk_cdp_memberships_segment_id_cdp_segments" not in membership_keys),
        ("0004_store_version", "cdp_store_version" in names),
        ("0005_claimed_at", "claimed_at" in delivery_columns),
        ("0006_tracking_senders", "cdp_tracking_senders" in names),
        ("0007_member_counts", "member_count" in {column["name"] for column in inspector.get_columns("cdp_segments")}),
        ("0008_buy_outbox", "cdp_buy_outbox" in names),
        ("0009_erasure_requests", "cdp_gdpr_deletions" in names),
        ("0010_reconciles", "cdp_schedule_runs" in names),
        ("0011_history", "cdp_history" in names),
    ]
    shape = "0001_baseline"
    for revision, present in features:
        if not present:
            break
        shape = revision
    return shape


def upgrade(engine: Engine, tables: CDPTables, report: Callable[[str], None] = lambda line: None) -> list[str]:
    """Bring the database to the newest revision; the revisions applied, oldest first
    (none when it was current). A new database is made at the newest revision at once.
    ``report`` hears one line per step. One upgrade at a time: another one running is
    waited for (see :mod:`.upgrade_lock`), and a killed one's leftovers are dropped."""
    with upgrade_lock(engine, report):
        return _upgrade(engine, tables, report)


def _upgrade(engine: Engine, tables: CDPTables, report: Callable[[str], None]) -> list[str]:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with engine.begin() as connection:
        drop_batch_leftovers(connection, {table.name for table in tables.all()}, report)
        found = status(connection)
        if found.current is None and found.recognised is None:
            tables.all()[0].metadata.create_all(connection, tables=tables.all())
            membership.ensure_store_version(connection, tables)
            VERSIONS.create(connection)  # stamped at the newest revision, as Alembic's stamp writes it
            connection.execute(VERSIONS.insert().values(version_num=found.head))
            report(f"created cdp_bridge's tables at revision {found.head}")
            return []
        if found.current is None:
            assert found.recognised is not None
            MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).stamp(_scripts(), found.recognised)
            report(f"an unversioned database shaped as revision {found.recognised}: stamped at it")
        pending = found.pending
    for revision in pending:
        with engine.begin() as connection:
            command.upgrade(_config(connection), revision)
        report(f"applied {revision}: {_scripts().get_revision(revision).doc.splitlines()[0]}")
    with engine.begin() as connection:
        membership.ensure_store_version(connection, tables)  # the row, should it have been deleted
    return pending


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database down to ``revision`` (for a rollback, and the tests)."""
    from alembic import command

    with engine.begin() as connection:
        command.downgrade(_config(connection), revision)
