"""Personalisation on every page: a user's segments are read once per request, and every
further check of that request is answered from that one read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask, render_template_string
from sqlalchemy import event, select

from cdp_bridge.store import utcnow
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


def test_a_users_segments_are_kept_between_requests_while_the_store_version_stands(
    personal_app: Flask, database_url: str
) -> None:
    post_webhook(personal_app, {"audiences": [{"id": "dogs", "add": ["8"]}]})
    assert not check(personal_app, "dogs")  # read, and kept at this version
    insert_behind_the_stores_back(personal_app, "dogs", "7")
    if database_url.startswith("sqlite"):  # a SQLite read costs less than the version check
        assert check(personal_app, "dogs")  # so nothing is kept: read again
        return
    assert not check(personal_app, "dogs")  # answered from what was kept: the version did not move
    post_webhook(personal_app, {"audiences": [{"id": "cats", "add": ["9"]}]})  # any delivery raises it
    assert check(personal_app, "dogs")


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


def test_without_the_version_row_every_request_reads(personal_app: Flask) -> None:
    """Tables made before the version existed (until flask cdp init-db adds its row)."""
    with personal_app.app_context():
        state = personal_app.extensions["cdp"]
        with state.engine.begin() as conn:
            conn.execute(state.tables.store_version.delete())
    post_webhook(personal_app, {"audiences": [{"id": "dogs", "add": ["8"]}]})
    assert not check(personal_app, "dogs")
    insert_behind_the_stores_back(personal_app, "dogs", "7")
    assert check(personal_app, "dogs")  # nothing was kept without a version
    with personal_app.app_context():
        personal_app.extensions["cdp"].create_tables()  # init-db puts the row back
        with state.engine.connect() as conn:
            assert conn.scalar(select(state.tables.store_version.c.version)) == 0
