"""Rejected ids and text that is not valid Unicode: rejected alone, kept as a bounded sample with counts, shown by the delivery log."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import update

from tests.support.webhook import ACTIVATION, cdp_of, delivery_rows, memberships, post_webhook


def test_a_queued_delivery_with_lone_surrogates_applies_everything_valid(webhook_app: Flask) -> None:
    body = {"audiences": [
        {"id": "good", "add": [str(i) for i in range(12)] + ["\ud800"]},
        {"id": "bad\udc00", "add": ["1"]},
        {"id": "tagged", "tags": ["ok", "\udfff"], "add": ["1"]},
    ]}
    answer = post_webhook(webhook_app, body)
    assert answer.status_code == 202
    with webhook_app.app_context():
        inbox = webhook_app.extensions["cdp"].inbox
        delivery_id = inbox.claim("test-worker")
        assert inbox.process(delivery_id, "test-worker") == "applied"
        recorded = inbox.get(delivery_id)
    assert memberships(webhook_app) == {"good": {str(i) for i in range(12)}}
    assert recorded.rejected_count == 3
    assert {r["audience"] for r in recorded.rejected.sample_dicts()} == {"good", "bad\\udc00", "tagged"}


def test_every_admin_page_renders_text_stored_before_surrogates_were_refused(webhook_app: Flask) -> None:
    cdp_of(webhook_app).admin_guard(lambda: True)
    post_webhook(webhook_app, {"audiences": [{"id": "cats", "add": ["1"], "tags": ["pets"]}]})
    with webhook_app.app_context():
        state = webhook_app.extensions["cdp"]
        with state.engine.begin() as conn:
            conn.execute(update(state.tables.segments).values(tags=["pe\ud800ts"]))
            conn.execute(update(state.tables.deliveries).values(
                rejected={"sample": [{"audience": "a\ud800", "reason": "r"}], "by_reason": {"r": 1}},
                rejected_count=1))
    client = webhook_app.test_client()
    for path in ["/cdp/admin/groups/shop", "/cdp/admin/deliveries", "/cdp/admin/deliveries/1"]:
        page = client.get(path)
        assert page.status_code == 200, path
    assert "pe\\ud800ts" in client.get("/cdp/admin/groups/shop").get_data(as_text=True)
    assert "a\\ud800" in client.get("/cdp/admin/deliveries/1").get_data(as_text=True)


@pytest.mark.parametrize("queued", [False, True], ids=["applied-now", "queued"])
def test_rejections_are_a_bounded_sample_with_a_count_per_reason(make_app, queued: bool) -> None:
    app = make_app(CDP_INLINE_WORKER=False, CDP_BULK_ASYNC_THRESHOLD=5000 if not queued else 10, **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
    body = {"audiences": [{"id": "vip", "add": [[]] * 1500 + ["ok"] + [""] * 500}]}
    answer = post_webhook(app, body).get_json()
    with app.app_context():
        recorded = app.extensions["cdp"].inbox.get(answer["delivery_id"])
    expected_reasons = {"user id must be a string or an integer, not list": 1500, "user id must not be empty": 500}
    assert recorded.rejected_count == 2000
    assert recorded.rejected.by_reason == expected_reasons
    assert len(recorded.rejected.sample) == 100
    if not queued:
        assert answer["rejected_count"] == 2000 and answer["rejected_by_reason"] == expected_reasons
        assert len(answer["rejected"]) == 100 and answer["rejected"] == recorded.rejected.sample_dicts()
        assert memberships(app) == {"vip": {"ok"}}
    (summary,) = delivery_rows(app)
    assert summary.rejected_count == 2000 and not hasattr(summary, "rejected")


def test_the_delivery_log_lists_counts_and_the_detail_page_shows_the_sample(webhook_app: Flask) -> None:
    cdp_of(webhook_app).admin_guard(lambda: True)
    post_webhook(webhook_app, {"audiences": [{"id": "vip", "add": [[]] * 3 + ["ok"]}]})
    client = webhook_app.test_client()
    listing = client.get("/cdp/admin/deliveries").get_data(as_text=True)
    assert '<a href="/cdp/admin/deliveries/1">3 rejected</a>' in listing
    assert "not list" not in listing  # the list reads counts, never the sample
    detail = client.get("/cdp/admin/deliveries/1").get_data(as_text=True)
    assert "<td>user id must be a string or an integer, not list</td><td>3</td>" in detail
    assert detail.count("<li>vip / []: ") == 3
