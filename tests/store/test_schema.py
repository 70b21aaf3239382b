"""Schema revisions (cdp_bridge/store/schema.py, cdp_bridge/migrations): a new database is
made at the newest revision; a 0.1 database, made with 0.1's own DDL and full of data,
is recognised, upgraded without losing a row, and works; a database newer than the code
is refused. On SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from flask import Flask
from sqlalchemy import MetaData, create_engine, insert, select, text

from cdp_bridge.store import schema
from tests.support import schema_0_1
from tests.support.webhook import ACTIVATION

#: Upgrades revision by revision from a full 0.1 database: the full run, not the quick one.
pytestmark = pytest.mark.slow

WHEN = datetime(2026, 11, 28, 12, 0, 0)
MEMBERS = 10_000


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["cdp", *args])


def revision_of(app: Flask) -> str | None:
    with app.app_context(), app.extensions["cdp"].engine.connect() as conn:
        return MigrationContext.configure(conn, opts={"version_table": schema.VERSION_TABLE}).get_current_revision()


def test_a_new_database_is_made_at_the_newest_revision(make_app) -> None:
    app = make_app(create_tables=False)
    result = run(app, "init-db")
    assert result.exit_code == 0, result.output
    assert f"created cdp_bridge's tables at revision {schema.head_revision()}" in result.output
    assert revision_of(app) == schema.head_revision()
    again = run(app, "upgrade-db")
    assert again.exit_code == 0 and "(nothing to apply)" in again.output


def test_the_revisions_from_nothing_make_what_the_tables_define(make_app, database_url: str) -> None:
    """Upgrading an empty database revision by revision ends where a new one is made at
    once: Alembic's autogenerate finds no difference between the two."""
    from alembic import command

    app = make_app(create_tables=False)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        command.upgrade(schema._config(conn), "head")
    with app.app_context():
        metadata = app.extensions["cdp"].db.metadata
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert [d for d in differences if "cdp_alembic_version" not in repr(d)] == []


def make_0_1_database(url: str) -> dict[str, list[tuple]]:
    """A database made by 0.1's DDL, filled as a site of 0.1 would have it: a protected
    group and another, segments with metadata, 10,000 memberships, and deliveries that
    were applied, failed, and are still queued (ids from the database's own sequences,
    so groups 1-2, segments 1-3, deliveries 1-3). Returns every row, by table."""
    engine = create_engine(url)
    tables = schema_0_1.define_tables(MetaData())
    metadata = tables.segment_groups.metadata
    metadata.create_all(engine)
    queued = json.dumps([{"id": "late", "name": "Late audience", "description": None, "tags": None, "profile_count": None,
                          "updated_at": None, "add": ["u1", "u2"], "remove": [], "members": None, "deleted": False,
                          "sequence": None}], separators=(",", ":"))
    with engine.begin() as conn:
        conn.execute(insert(tables.segment_groups), [
            {"identifier": "shop", "name": "Shop", "created_at": WHEN, "updated_at": WHEN},
            {"identifier": "editors", "name": "Editors' picks", "created_at": WHEN, "updated_at": WHEN}])
        conn.execute(insert(tables.segments), [
            {"group_id": 1, "identifier": "5d822e81", "name": "Cat owners", "description": "Owners of cats",
             "tags": ["pets", "cats"], "profile_count": 1200, "source_updated_at": WHEN, "last_sequence": 42,
             "created_at": WHEN, "updated_at": WHEN},
            {"group_id": 1, "identifier": "77aa0001", "name": "VIP", "description": None, "tags": None,
             "profile_count": None, "source_updated_at": None, "last_sequence": None, "created_at": WHEN, "updated_at": WHEN},
            {"group_id": 2, "identifier": "hand", "name": "By hand", "description": "kept by hand", "tags": [],
             "profile_count": 3, "source_updated_at": None, "last_sequence": None, "created_at": WHEN, "updated_at": WHEN}])
        conn.execute(insert(tables.memberships), [{"segment_id": 1 + n % 3, "user_id": f"user-{n:05d}", "created_at": WHEN}
                                                  for n in range(MEMBERS)])
        conn.execute(insert(tables.tombstones), [{"group_id": 1, "identifier": "0000dead", "sequence": 40, "deleted_at": WHEN}])
        base = {"received_at": WHEN, "client_id": "test-client", "segment_group_identifier": "shop", "payload_format": "native",
                "available_at": WHEN, "claimed_by": None, "lease_expires_at": None, "finished_at": None, "duration_ms": None}
        conn.execute(insert(tables.deliveries), [
            {**base, "request_id": "r1", "payload": "[]", "items": 3, "status": "applied", "attempts": 1, "applied": 2,
             "stale": 0, "rejected": [{"audience": "5d822e81", "user_id": "\t", "reason": "invalid user id"}],
             "error": None, "finished_at": WHEN, "duration_ms": 12},
            {**base, "request_id": "r2", "payload": "[]", "items": 150, "status": "failed", "attempts": 5,
             "applied": None, "stale": None, "rejected": None, "error": "database error: deadlock"},
            {**base, "request_id": "r3", "payload": queued, "items": 150, "status": "queued", "attempts": 0,
             "applied": None, "stale": None, "rejected": None, "error": None}])
    rows = {}
    with engine.connect() as conn:
        for table in tables.all():
            rows[table.name] = sorted(tuple(row) for row in conn.execute(select(table)))
    engine.dispose()
    return rows


@pytest.fixture
def app_on_0_1(make_app, database_url: str) -> tuple[Flask, dict[str, list[tuple]]]:
    rows = make_0_1_database(database_url)
    return make_app(create_tables=False, CDP_INLINE_WORKER=False, **ACTIVATION), rows


def rows_now(app: Flask, tables_0_1: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The 0.1 tables' rows now, in 0.1's columns only."""
    legacy = schema_0_1.define_tables(MetaData())
    with app.app_context(), app.extensions["cdp"].engine.connect() as conn:
        return {table.name: sorted(tuple(row) for row in conn.execute(select(*table.columns))) for table in legacy.all()}


def test_a_0_1_database_is_upgraded_without_losing_a_row(app_on_0_1) -> None:
    app, before = app_on_0_1
    result = run(app, "upgrade-db")
    assert result.exit_code == 0, result.output
    assert "an unversioned database shaped as revision 0001_baseline: stamped at it" in result.output
    for revision in ("0002_rejected_count", "0003_drop_memberships_fk", "0004_store_version", "0005_claimed_at",
                     "0006_tracking_senders", "0007_member_counts", "0008_buy_outbox", "0009_erasure_requests",
                     "0010_reconciles", "0011_history"):
        assert f"applied {revision}" in result.output
    assert revision_of(app) == schema.head_revision()
    assert rows_now(app, before) == before
    assert len(before["cdp_memberships"]) == MEMBERS
    with app.app_context():
        state = app.extensions["cdp"]
        inbox = state.inbox
        assert inbox.get(1).rejected_count == 1 and inbox.get(1).rejected.total == 1  # 0.1's plain list, counted
        assert inbox.get(2).status == "failed" and inbox.get(3).status == "queued"
        assert "Cat owners" in state.store.user_segments("user-00000")
        claimed = state.inbox.claim("upgrade-test")
        assert claimed == 3 and state.inbox.process(claimed, "upgrade-test") == "applied"
        assert _members(state, "late") == {"u1", "u2"}
        with state.engine.connect() as conn:  # 0011 started each segment's chart at its count then
            t = state.tables
            started = dict(conn.execute(select(t.history.c.subject, t.history.c.value).where(t.history.c.period == "day")
                                        .where(t.history.c.series == "members")).all())
            counted = dict(conn.execute(select(t.segments.c.id, t.segments.c.member_count)).all())
        assert started and started == counted
    assert run(app, "upgrade-db").output.endswith("(nothing to apply).\n")


def _members(state, identifier: str) -> set[str]:  # noqa: ANN001
    t = state.tables
    with state.engine.connect() as conn:
        return set(conn.scalars(select(t.memberships.c.user_id).join(t.segments, t.segments.c.id == t.memberships.c.segment_id)
                                .where(t.segments.c.identifier == identifier)))


def test_check_passes_once_the_queued_delivery_is_applied(app_on_0_1) -> None:
    app, _ = app_on_0_1
    assert run(app, "upgrade-db").exit_code == 0
    assert run(app, "worker", "--once").exit_code == 0  # the delivery 0.1 left queued
    result = run(app, "check")
    assert result.exit_code == 0, result.output


def test_downgrading_revisions_and_upgrading_again_loses_nothing(app_on_0_1) -> None:
    app, before = app_on_0_1
    assert run(app, "upgrade-db").exit_code == 0
    with app.app_context():
        state = app.extensions["cdp"]
        schema.downgrade(state.engine, "-2")
        assert revision_of(app) == "0009_erasure_requests"
        schema.downgrade(state.engine, "-3")
    assert revision_of(app) == "0006_tracking_senders"
    result = run(app, "upgrade-db")
    assert result.exit_code == 0 and "applied 0007_member_counts" in result.output
    assert "applied 0008_buy_outbox" in result.output and "applied 0009_erasure_requests" in result.output
    assert "applied 0010_reconciles" in result.output and "applied 0011_history" in result.output
    assert rows_now(app, before) == before


@pytest.mark.parametrize(("down_to", "recognised"), [("0003_drop_memberships_fk", "0003_drop_memberships_fk"),
                                                      ("0004_store_version", "0004_store_version")])
def test_an_unversioned_database_of_a_later_shape_is_recognised(app_on_0_1, down_to: str, recognised: str) -> None:
    """A development version after 0.1 made its tables without revisions: its shape says
    which revision it is at."""
    app, before = app_on_0_1
    assert run(app, "upgrade-db").exit_code == 0
    with app.app_context():
        engine = app.extensions["cdp"].engine
        schema.downgrade(engine, down_to)
        with engine.begin() as conn:
            conn.execute(text(f"DROP TABLE {schema.VERSION_TABLE}"))
    result = run(app, "upgrade-db")
    assert result.exit_code == 0, result.output
    assert f"shaped as revision {recognised}: stamped at it" in result.output
    assert rows_now(app, before) == before


def test_a_database_newer_than_the_code_is_refused(app_on_0_1) -> None:
    app, _ = app_on_0_1
    assert run(app, "upgrade-db").exit_code == 0
    with app.app_context(), app.extensions["cdp"].engine.begin() as conn:
        conn.execute(text(f"UPDATE {schema.VERSION_TABLE} SET version_num = '0099_from_the_future'"))
    result = run(app, "upgrade-db")
    assert result.exit_code == 1
    assert "at revision 0099_from_the_future, which this version of cdp_bridge does not know" in result.output


def test_until_the_upgrade_check_fails_naming_the_command_and_the_webhook_answers_503(app_on_0_1, caplog) -> None:
    import logging

    from tests.support.webhook import post_webhook

    app, before = app_on_0_1
    check = run(app, "check")
    assert check.exit_code == 1
    assert ("FAIL  schema at revision 0001_baseline, pending 0002_rejected_count, 0003_drop_memberships_fk,"
            " 0004_store_version, 0005_claimed_at, 0006_tracking_senders, 0007_member_counts, 0008_buy_outbox,"
            " 0009_erasure_requests, 0010_reconciles, 0011_history:"
            " run flask cdp upgrade-db"
            in check.output)
    with caplog.at_level(logging.ERROR, logger="cdp_bridge.schema"):
        for _ in range(3):
            response = post_webhook(app, {"audiences": [{"id": "5d822e81", "add": ["new-user"]}]})
            assert response.status_code == 503 and response.headers["Retry-After"]
            assert response.get_json() == {"error": "unavailable", "message": "the database's cdp_* tables are behind"
                                                                         " this code: run flask cdp upgrade-db"}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["cdp_bridge's tables are at revision 0001_baseline, not 0011_history: run flask cdp"
                      " upgrade-db; until then the webhook answers 503 and workers wait"]  # once, not per request
    assert rows_now(app, before) == before  # nothing half-written
    assert run(app, "upgrade-db").exit_code == 0
    assert post_webhook(app, {"audiences": [{"id": "5d822e81", "add": ["new-user"]}]}).status_code == 200


def test_tables_a_host_made_with_create_all_count_as_current(make_app) -> None:
    """db.create_all() on the host's metadata makes the newest shape without a version:
    the webhook takes deliveries, and upgrade-db only stamps it."""
    from tests.support.webhook import post_webhook

    app = make_app(create_tables=False, CDP_INLINE_WORKER=False, **ACTIVATION)
    with app.app_context():
        state = app.extensions["cdp"]
        state.db.metadata.create_all(state.engine, tables=state.tables.all())
        state.store.create_group("shop", "Shop")
    assert post_webhook(app, {"audiences": [{"id": "cats", "add": ["1"]}]}).status_code == 200
    result = run(app, "upgrade-db")
    assert result.exit_code == 0 and "stamped at it" in result.output and "applied" not in result.output
    assert revision_of(app) == schema.head_revision()


def test_a_worker_on_an_old_schema_names_the_command_and_applies_nothing(app_on_0_1, caplog) -> None:
    import logging

    from cdp_bridge.jobs.worker import QueueWorker

    app, before = app_on_0_1
    with caplog.at_level(logging.ERROR, logger="cdp_bridge.schema"):
        once = run(app, "worker", "--once")
        assert once.exit_code == 1 and "run flask cdp upgrade-db" in once.output
        with app.app_context():
            state = app.extensions["cdp"]
            worker = QueueWorker(state.queue_jobs(), ready=state.schema_gate.is_current)
            assert worker.run_once() == [] and worker.run_once() == []  # waits: no OperationalError, no failed delivery
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "run flask cdp upgrade-db" in errors[0]  # one per process, not one per try
    assert rows_now(app, before) == before


def test_create_all_on_a_0_1_database_is_no_head_start(app_on_0_1) -> None:
    """The demo and hosts call db.create_all(): on a 0.1 database it adds the new tables but
    not the new columns. The shape is still 0.1's, and the upgrade adopts the tables."""
    app, before = app_on_0_1
    with app.app_context():
        state = app.extensions["cdp"]
        state.db.metadata.create_all(state.engine, tables=state.tables.all())
    check = run(app, "check")
    assert check.exit_code == 1 and "schema at revision 0001_baseline" in check.output
    result = run(app, "upgrade-db")
    assert result.exit_code == 0, result.output
    assert "applied 0007_member_counts" in result.output
    assert rows_now(app, before) == before
    check = run(app, "check")  # the queued delivery 0.1 left makes the queue line fail: the schema line is the point
    assert "cdp tables at schema revision 0011_history" in check.output and "schema at revision 0001" not in check.output


def test_pages_and_the_back_office_on_an_old_schema_answer_without_a_500(app_on_0_1) -> None:
    from flask import render_template_string

    from tests.support.webhook import cdp_of

    app, _ = app_on_0_1
    cdp = cdp_of(app)
    cdp.user_id_loader(lambda: "user-00000")
    cdp.admin_guard(lambda: True)

    @app.get("/page")
    def page() -> str:
        return render_template_string("{{ cdp_in_segment('Cat owners') }}|{{ cdp_user_segments() | length }}")

    client = app.test_client()
    assert client.get("/page").get_data(as_text=True) == "False|0"  # no segments until the upgrade
    office = client.get("/cdp/admin/groups")
    assert office.status_code == 503 and "run flask cdp upgrade-db" in office.get_data(as_text=True)
    assert run(app, "upgrade-db").exit_code == 0
    assert client.get("/page").get_data(as_text=True) == "True|1"
    assert client.get("/cdp/admin/groups").status_code == 200


def test_every_revision_says_whether_the_previous_code_keeps_working() -> None:
    """A rolling deploy depends on it: each revision after the baseline names itself an
    expand step (previous code keeps working) or a contract step (it must be gone)."""
    scripts = [script for script in schema._scripts().walk_revisions() if script.down_revision is not None]
    assert len(scripts) == 10
    for script in scripts:
        text = script.module.__doc__ or ""
        assert "Expand:" in text or "Contract:" in text, script.revision
