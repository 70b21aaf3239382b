"""Personalisation on every page: a user's segments are read once per request, and every
further check of that request is answered from that one read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask, render_template_string
from sqlalchemy import event

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
