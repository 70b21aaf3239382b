"""A small delivery costs few database round trips (issue: small deliveries under load),
counted at the driver, so that none creeps back: every statement of the transaction,
SQLAlchemy's and the bulk writer's raw cursor's alike."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import event, select

from cdp_bridge.store import history
from tests.support.history import figure_today
from tests.support.webhook import post_webhook


@pytest.fixture
def statements(webhook_app: Flask) -> Iterator[list[str]]:
    """Every statement the app's connections send to PostgreSQL, whoever sends it: each
    new connection's cursors count (SQLAlchemy's and the bulk writer's raw ones alike)."""
    import psycopg

    seen: list[str] = []
    with webhook_app.app_context():
        engine = webhook_app.extensions["cdp"].engine

    class Counting(psycopg.Cursor):  # type: ignore[type-arg]
        def execute(self, query, params=None, **kwargs):  # noqa: ANN001, ANN201
            seen.append(str(query))
            return super().execute(query, params, **kwargs)

    def count_cursor(dbapi_connection, connection_record) -> None:  # noqa: ANN001
        dbapi_connection.cursor_factory = Counting

    event.listen(engine, "connect", count_cursor)
    engine.dispose()  # new connections, each counting
    yield seen
    event.remove(engine, "connect", count_cursor)


def store_version(app: Flask) -> int:
    with app.app_context():
        state = app.extensions["cdp"]
        with state.engine.connect() as conn:
            return int(conn.scalar(select(state.tables.store_version.c.version)))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # SQLite is in-process: no round trips
def test_a_small_delivery_to_a_known_audience_is_four_statements(webhook_app: Flask, statements: list[str]) -> None:
    """The group (and whether anyone is held out), the segment (locked), the members and
    the segment's member count in one statement, the delivery's record; no ping."""
    assert post_webhook(webhook_app, {"request_id": "r1", "audiences": [{"id": "cats", "add": ["1", "2"]}]}).status_code == 200
    version = store_version(webhook_app)
    statements.clear()
    body = {"request_id": "r2", "audiences": [{"id": "cats", "add": [str(n) for n in range(3, 9)]}]}
    response = post_webhook(webhook_app, body)
    assert response.status_code == 200 and response.get_json()["applied"] == 1
    assert not [statement for statement in statements if statement.strip() == ";"]  # no ping on checkout
    work = statements
    assert len(work) == 4, "\n---\n".join(work)
    assert "cdp_segment_groups" in work[0] and "cdp_erasure_requests" in work[0] and "cdp_segments" in work[1]
    assert "INSERT INTO cdp_memberships" in work[2] and "UPDATE cdp_segments SET member_count" in work[2]
    assert "cdp_deliveries" in work[3]
    assert store_version(webhook_app) == version  # members only: the kept names stay valid


def test_segments_that_change_raise_the_store_version(webhook_app: Flask) -> None:
    """A new segment, a new name, a deletion raise it; the same name again does not."""
    steps = [({"id": "cats", "name": "Cats", "add": ["1"]}, 1), ({"id": "cats", "name": "Cats", "add": ["2"]}, 0),
             ({"id": "cats", "name": "Cat owners"}, 1), ({"id": "cats", "remove": ["1"]}, 0),
             ({"id": "cats", "deleted": True}, 1)]
    for audience, raised in steps:
        before = store_version(webhook_app)
        assert post_webhook(webhook_app, {"audiences": [audience]}).status_code == 200
        assert store_version(webhook_app) - before == raised, audience


def test_a_repeated_request_id_applies_nothing_a_second_time(webhook_app: Flask) -> None:
    """The record is written after the changes: its unique key finds the repeat, and rolls back what it applied."""
    first = post_webhook(webhook_app, {"request_id": "same", "audiences": [{"id": "cats", "members": ["1", "2"]}]})
    post_webhook(webhook_app, {"audiences": [{"id": "cats", "members": ["3"]}]})  # changed in between
    again = post_webhook(webhook_app, {"request_id": "same", "audiences": [{"id": "cats", "members": ["1", "2"]}]})
    assert again.get_json() == {"status": "duplicate", "delivery_id": first.get_json()["delivery_id"]}
    with webhook_app.app_context():
        assert set(webhook_app.extensions["cdp"].store.members("shop", "cats")) == {"3"}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_deliveries_in_flight_together_count_in_different_rows(webhook_app: Flask) -> None:
    """The dashboard's count of applied deliveries is no row every delivery waits for: a
    second delivery commits while the first holds its transaction open (before, it waited
    for the first's commit, a flush to disk under fsync: issue 41's small deliveries)."""
    for audience in ("cats", "dogs"):  # both segments exist: the deliveries below change members only
        assert post_webhook(webhook_app, {"audiences": [{"id": audience, "add": ["0"]}]}).status_code == 200
    with webhook_app.app_context():
        engine = webhook_app.extensions["cdp"].engine
    first_held, second_done, outcome = threading.Event(), threading.Event(), {}

    def hold_the_first_commit(conn) -> None:  # noqa: ANN001
        if not first_held.is_set():
            first_held.set()
            outcome["second committed meanwhile"] = second_done.wait(10)

    event.listen(engine, "commit", hold_the_first_commit)
    try:
        first = threading.Thread(target=lambda: outcome.setdefault(
            "first", post_webhook(webhook_app, {"audiences": [{"id": "cats", "add": ["1"]}]}).status_code))
        first.start()
        assert first_held.wait(10)
        assert post_webhook(webhook_app, {"audiences": [{"id": "dogs", "add": ["2"]}]}).status_code == 200
        second_done.set()
        first.join(20)
    finally:
        event.remove(engine, "commit", hold_the_first_commit)
    assert outcome == {"second committed meanwhile": True, "first": 200}
    assert figure_today(webhook_app, history.DELIVERIES_APPLIED) == 4  # the shards add up
