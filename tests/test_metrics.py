"""``GET /cdp/metrics`` (SPEC section 12): who may read it, and that the figures move when
deliveries are received, applied, rejected, queued and failed."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import delete

from cdp_bridge import ConfigurationError
from tests.support.metrics import value
from tests.support.webhook import ACTIVATION, cdp_of, post_webhook

TOKEN = "metrics-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def scrape(app: Flask, headers: dict[str, str] | None = None, expect: int = 200) -> str:
    response = app.test_client().get("/cdp/metrics", headers=headers or {})
    assert response.status_code == expect, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_without_a_token_or_a_guard_there_is_no_page(make_app) -> None:
    app = make_app(**ACTIVATION)
    scrape(app, BEARER, expect=404)


def test_the_token_opens_it_in_constant_time_and_nothing_else_does(make_app) -> None:
    app = make_app(CDP_METRICS_TOKEN=TOKEN, **ACTIVATION)
    text = scrape(app, BEARER)
    assert "# TYPE cdp_deliveries_received_total counter" in text and "cdp_queue_depth 0.0" in text
    response = app.test_client().get("/cdp/metrics", headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.get_data(as_text=True)
    scrape(app, {"Authorization": f"Basic {TOKEN}"}, expect=401)
    scrape(app, {}, expect=401)


def test_the_admin_guard_opens_it_too(make_app) -> None:
    app = make_app(**ACTIVATION)
    admitted = {"yes": False}
    cdp_of(app).admin_guard(lambda: admitted["yes"])
    scrape(app, expect=403)
    admitted["yes"] = True
    assert "cdp_webhook_duration_seconds_count" in scrape(app)


@pytest.mark.parametrize("token", ["short", "has spaces in it 0123456789", "   "])
def test_a_weak_token_is_refused(tmp_path, token: str) -> None:
    from cdp_bridge import CDP

    app = Flask("weak_token", instance_path=str(tmp_path / "instance"))
    app.config.update(CDP_METRICS_TOKEN=token)
    with pytest.raises(ConfigurationError, match="CDP_METRICS_TOKEN: expected a") as raised:
        CDP(app)
    assert token.strip() == "" or token not in str(raised.value)


@pytest.fixture
def webhook_app(make_app) -> Flask:
    """Deliveries of 10 ids or more are queued for a worker; no inline worker thread."""
    app = make_app(CDP_INLINE_WORKER=False, CDP_BULK_ASYNC_THRESHOLD=10, CDP_METRICS_TOKEN=TOKEN, **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
    return app


def test_deliveries_received_applied_rejected_and_queued_are_counted(webhook_app: Flask) -> None:
    state = webhook_app.extensions["cdp"]
    before = scrape(webhook_app, BEARER)
    small = {"audiences": [{"id": "77aa0001", "name": "VIP", "members": ["1", "2", "bad id\u0000"]}]}
    assert post_webhook(webhook_app, small).status_code == 200
    large = {"audiences": [{"id": "77aa0002", "name": "Many", "members": [str(n) for n in range(12)]}]}
    assert post_webhook(webhook_app, large).status_code == 202
    after = scrape(webhook_app, BEARER)
    label = {"activation": ACTIVATION["CDP_ACTIVATION_CLIENT_ID"]}

    def moved(name: str) -> float:
        return value(after, name, **label) - value(before, name, **label)

    assert moved("cdp_deliveries_received_total") == 2
    assert moved("cdp_deliveries_applied_total") == 1  # the large one waits for a worker
    assert moved("cdp_rejected_ids_total") == 1
    assert value(after, "cdp_queue_depth") == 1
    assert value(after, "cdp_queue_oldest_age_seconds") >= 0
    assert value(after, "cdp_webhook_duration_seconds_count") - value(before, "cdp_webhook_duration_seconds_count") == 2
    with webhook_app.app_context():
        inbox = state.inbox
        delivery = inbox.claim("test-worker")
        assert delivery is not None and inbox.process(delivery, "test-worker") == "applied"
    final = scrape(webhook_app, BEARER)
    assert value(final, "cdp_deliveries_applied_total", **label) - value(before, "cdp_deliveries_applied_total", **label) == 2
    assert value(final, "cdp_queue_depth") == 0
    assert value(final, "cdp_delivery_apply_seconds_count") - value(before, "cdp_delivery_apply_seconds_count") == 2


def test_a_delivery_given_up_is_counted_as_failed(webhook_app: Flask) -> None:
    state = webhook_app.extensions["cdp"]
    before = scrape(webhook_app, BEARER)
    large = {"audiences": [{"id": "77aa0003", "name": "Many", "members": [str(n) for n in range(12)]}]}
    assert post_webhook(webhook_app, large).status_code == 202
    with webhook_app.app_context():
        with state.engine.begin() as conn:  # the group goes behind the store's back: applying fails
            conn.execute(delete(state.tables.segment_groups))
        inbox = state.inbox
        inbox.queue.max_attempts = 1
        delivery = inbox.claim("test-worker")
        assert delivery is not None and inbox.process(delivery, "test-worker") == "failed"
    after = scrape(webhook_app, BEARER)
    label = {"activation": ACTIVATION["CDP_ACTIVATION_CLIENT_ID"]}
    assert value(after, "cdp_deliveries_failed_total", **label) - value(before, "cdp_deliveries_failed_total", **label) == 1


def test_a_database_that_cannot_answer_leaves_the_queue_gauges_out(make_app, tmp_path) -> None:
    app = make_app(CDP_METRICS_TOKEN=TOKEN, create_tables=False, **ACTIVATION)
    text = scrape(app, BEARER)
    assert "cdp_queue_depth" not in text and "cdp_deliveries_received_total" in text
