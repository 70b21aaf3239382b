"""Personalisation on every page: a user's segments are read once per request, and every
further check of that request is answered from that one read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, render_template_string
from sqlalchemy import event, select

from cdp_bridge.store import membership, utcnow
from tests.support.webhook import cdp_of, post_webhook

PAGE = ("{% for name in ['Cat owners', 'VIP', 'shop/cats', 'shop/Cat owners', 'dogs', 'nope', 'cats', 'vip', "
        "'shop/vip', 'other/cats'] %}{{ cdp_in_segment(name) | int }}{% endfor %}"
        "|{{ cdp_user_segments() | map(attribute='identifier') | join(',') }}")


@pytest.fixture
def personal_app(webhook_app: Flask) -> Flask:
    post_webhook(webhook_app, {"audiences": [{"id": "cats", "name": "Cat owners", "add": ["7", "8"]},
                                             {"id": "vip", "name": "VIP", "add": ["7"]}]})
    cdp_of(webhook_app).user_id_loader(lambda: "7")
    return webhook_app


@pytest.fixture
def membership_queries(personal_app: Flask) -> Iterator[list[object]]:
    """Every time a database connection is taken from the pool: the read uses one, and a
    page renders nothing else from the database."""
    seen: list[object] = []
    with personal_app.app_context():
        engine = personal_app.extensions["cdp"].engine

    def record(dbapi_connection, connection_record, proxy) -> None:  # noqa: ANN001
        seen.append(dbapi_connection)

    event.listen(engine, "checkout", record)
    yield seen
    event.remove(engine, "checkout", record)


def test_a_page_of_checks_reads_the_users_segments_once(personal_app: Flask, membership_queries: list[object]) -> None:
    with personal_app.test_request_context("/"):
        html = render_template_string(PAGE)
        assert cdp_of(personal_app).is_in_segment("7", "VIP")  # the Python API shares the request's read
    assert html == "1111001110|cats,vip"
    assert len(membership_queries) == 1


def test_the_pages_read_is_seen_by_engine_events_and_query_recording(make_app) -> None:
    """The read goes through SQLAlchemy Core on the request's connection: engine events
    (what debug toolbars and tracers hook) and Flask-SQLAlchemy's query recording see it.
    The raw DBAPI read it replaced was invisible to both."""
    from flask_sqlalchemy.record_queries import get_recorded_queries

    app = make_app(SQLALCHEMY_RECORD_QUERIES=True, CDP_INLINE_WORKER=False)
    with app.app_context():
        store = app.extensions["cdp"].store
        store.create_group("pets", "Pets")
        store.add_members("pets", "cats", ["7"], name="Cat owners")
        engine = app.extensions["cdp"].engine
    cdp_of(app).user_id_loader(lambda: "7")
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        with app.test_request_context("/"):
            assert render_template_string("{{ cdp_in_segment('Cat owners') }}") == "True"
            recorded = [query.statement for query in get_recorded_queries()]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert any("cdp_memberships" in statement for statement in statements)
    assert any("cdp_memberships" in statement for statement in recorded)


def test_each_request_reads_afresh(personal_app: Flask, membership_queries: list[object]) -> None:
    with personal_app.test_request_context("/"):
        assert render_template_string("{{ cdp_in_segment('dogs') }}{{ cdp_in_segment('dogs') }}") == "FalseFalse"
    assert len(membership_queries) == 1
    post_webhook(personal_app, {"audiences": [{"id": "dogs", "add": ["7"]}]})
    before = len(membership_queries)
    with personal_app.test_request_context("/"):
        assert render_template_string("{{ cdp_in_segment('dogs') }}{{ cdp_in_segment('dogs') }}") == "TrueTrue"
    assert len(membership_queries) == before + 1


def test_outside_a_request_every_call_reads(personal_app: Flask, membership_queries: list[object]) -> None:
    with personal_app.app_context():
        cdp = cdp_of(personal_app)
        assert cdp.is_in_segment("8", "cats") and not cdp.is_in_segment("8", "vip")
    assert len(membership_queries) == 2


def test_a_bad_segment_argument_is_refused(personal_app: Flask) -> None:
    from cdp_bridge import ValidationError

    with personal_app.test_request_context("/"), pytest.raises(ValidationError, match="non-empty string"):
        cdp_of(personal_app).is_in_segment("7", "")


def insert_behind_the_stores_back(app: Flask, segment: str, user_id: str) -> None:
    """A membership written without raising the store version (what no cdp_bridge code does)."""
    with app.app_context():
        state = app.extensions["cdp"]
        t = state.tables
        with state.engine.begin() as conn:
            segment_id = conn.scalar(select(t.segments.c.id).where(t.segments.c.identifier == segment))
            conn.execute(t.memberships.insert().values(segment_id=segment_id, user_id=user_id, created_at=utcnow()))


def check(app: Flask, segment: str) -> bool:
    with app.test_request_context("/"):
        return render_template_string("{{ cdp_in_segment(name) }}", name=segment) == "True"


def rename_behind_the_stores_back(app: Flask, segment: str, name: str) -> None:
    """A segment renamed without raising the store version (what no cdp_bridge code does)."""
    with app.app_context():
        state = app.extensions["cdp"]
        s = state.tables.segments
        with state.engine.begin() as conn:
            conn.execute(s.update().where(s.c.identifier == segment).values(name=name))


def test_memberships_are_read_on_every_request(personal_app: Flask) -> None:
    post_webhook(personal_app, {"audiences": [{"id": "dogs", "add": ["8"]}]})
    assert not check(personal_app, "dogs")
    insert_behind_the_stores_back(personal_app, "dogs", "7")
    assert check(personal_app, "dogs")  # nothing of a user is kept between requests


def test_segment_names_are_kept_while_the_store_version_stands(personal_app: Flask) -> None:
    assert check(personal_app, "Cat owners")  # the names are read, and kept at this version
    rename_behind_the_stores_back(personal_app, "cats", "Cat people")
    assert check(personal_app, "Cat owners") and not check(personal_app, "Cat people")  # kept: the version stood
    assert check(personal_app, "cats")
    post_webhook(personal_app, {"audiences": [{"id": "dogs", "add": ["9"]}]})  # any delivery raises it
    assert check(personal_app, "Cat people") and not check(personal_app, "Cat owners")
    with personal_app.test_request_context("/"):
        assert render_template_string(PAGE) == "0110001110|cats,vip"  # "Cat owners" is gone by both names


def change_between_reads(connection: Any, change: Callable[[], None]) -> list[str]:
    """Have ``change`` committed by another connection right after ``connection``'s first
    statement (a delivery landing between the read of the user's segment ids and the read
    of the segments' names); the statements ``connection`` runs are listed."""
    statements: list[str] = []

    @event.listens_for(connection, "after_cursor_execute")
    def between(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)
        if len(statements) == 1:
            change()

    return statements


def test_a_change_between_the_two_reads_is_answered_from_one_snapshot(personal_app: Flask) -> None:
    """User 7 is in "birds" when its ids are read; before the names are read, "birds" is
    deleted and a new segment "fish" (user 8 only) takes its row id. Naming 7's ids from
    the newer catalogue would put 7 in "fish"; the answer must be the newer store's."""
    on_store(personal_app, lambda store: store.create_group("zoo", "Zoo"))
    on_store(personal_app, lambda store: store.add_members("zoo", "birds", ["7"]))
    assert check(personal_app, "zoo/birds")  # the catalogue is read at this version
    with personal_app.app_context():
        state = personal_app.extensions["cdp"]
        t = state.tables
        with state.engine.connect() as conn:
            birds = conn.execute(select(t.segments.c.id, t.segments.c.group_id)
                                 .where(t.segments.c.identifier == "birds")).one()

        def birds_become_fish() -> None:
            with state.engine.begin() as conn:
                conn.execute(t.memberships.delete().where(t.memberships.c.segment_id == birds.id))
                conn.execute(t.segments.delete().where(t.segments.c.id == birds.id))
                now = utcnow()
                conn.execute(t.segments.insert().values(id=birds.id, group_id=birds.group_id, identifier="fish",
                                                        name="Fish", created_at=now, updated_at=now))
                conn.execute(t.memberships.insert().values(segment_id=birds.id, user_id="8", created_at=now))
                membership.bump_store_version(conn, t)

        # A delivery that renamed a segment (raising the version) before this request: the kept names are old.
        post_webhook(personal_app, {"audiences": [{"id": "vip", "name": "VIP members", "add": ["9"]}]})
        with state.engine.connect() as conn:
            statements = change_between_reads(conn, birds_become_fish)
            found = state.store._user_segments_read.read_on(conn, "7")
        assert len(statements) == 3  # ids, then the names (of a newer version), then both in one
        assert [segment.identifier for segment in found.segments] == ["cats", "vip"]
        assert "zoo/fish" not in found and "fish" not in found and "zoo/birds" not in found
        assert "Cat owners" in found


def on_store(app: Flask, action) -> None:  # noqa: ANN001
    """Run ``action(store)`` in an app context of its own (a request inside an app context
    would share its ``g`` and be no new request)."""
    with app.app_context():
        action(app.extensions["cdp"].store)


@pytest.mark.parametrize("change", ["remove_members", "delete_segment", "delete_group"])
def test_every_change_by_hand_is_seen_by_the_next_request(personal_app: Flask, change: str) -> None:
    on_store(personal_app, lambda store: store.create_group("hand", "By hand"))
    on_store(personal_app, lambda store: store.add_members("hand", "extra", ["7"], name="Extra"))
    assert check(personal_app, "hand/Extra")
    undo = {
        "remove_members": lambda store: store.remove_members("hand", "extra", ["7"]),
        "delete_segment": lambda store: store.delete_segment("hand", "extra"),
        "delete_group": lambda store: store.delete_group("hand"),
    }[change]
    on_store(personal_app, undo)
    assert not check(personal_app, "hand/Extra")


def test_a_delivery_applied_by_a_worker_is_seen_by_the_next_request(personal_app: Flask) -> None:
    assert check(personal_app, "VIP")
    body = {"audiences": [{"id": "vip", "remove": ["7"]}] + [{"id": f"pad{i}", "add": [str(i)]} for i in range(10)]}
    assert post_webhook(personal_app, body).status_code == 202  # queued: a worker applies it
    with personal_app.app_context():
        inbox = personal_app.extensions["cdp"].inbox
        assert inbox.process(inbox.claim("w"), "w") == "applied"
    assert not check(personal_app, "VIP")


def test_without_the_version_row_nothing_is_kept(personal_app: Flask) -> None:
    """Tables made before the version existed (until flask cdp init-db adds its row)."""
    with personal_app.app_context():
        state = personal_app.extensions["cdp"]
        with state.engine.begin() as conn:
            conn.execute(state.tables.store_version.delete())
    assert check(personal_app, "Cat owners")
    rename_behind_the_stores_back(personal_app, "cats", "Cat people")
    assert check(personal_app, "Cat people")  # names are read with the segments: nothing was kept
    insert_behind_the_stores_back(personal_app, "vip", "8")
    with personal_app.test_request_context("/"):
        assert cdp_of(personal_app).is_in_segment("8", "VIP")
    with personal_app.app_context():
        personal_app.extensions["cdp"].create_tables()  # init-db puts the row back
        with state.engine.connect() as conn:
            assert conn.scalar(select(state.tables.store_version.c.version)) == 0
