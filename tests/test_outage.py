"""The database stops: the webhook answers 503 with Retry-After, nothing is half-applied,
and once the database is back deliveries go through."""

from __future__ import annotations

from flask import Flask

from cdp_bridge import CDP
from tests.support.webhook import ACTIVATION, delivery_rows, memberships, post_webhook


def test_database_down_gives_503_then_recovers(postgres_server) -> None:
    app = Flask("outage")
    app.config.update(SQLALCHEMY_DATABASE_URI=postgres_server.create_database(), CDP_INLINE_WORKER=False, **ACTIVATION)
    CDP(app)
    with app.app_context():
        app.extensions["cdp"].create_tables()
        app.extensions["cdp"].store.create_group("shop")
    assert post_webhook(app, {"audiences": [{"id": "a", "members": ["1"]}]}).status_code == 200

    postgres_server.stop()
    try:
        body = {"request_id": "during-outage", "audiences": [{"id": "a", "add": ["2"]}, {"id": "b", "add": ["3"]}]}
        response = post_webhook(app, body)
        assert response.status_code == 503
        assert response.get_json() == {"error": "unavailable", "message": "the database cannot be reached"}
        assert int(response.headers["Retry-After"]) > 0
    finally:
        postgres_server.start()

    # Nothing of the refused delivery was recorded or applied.
    assert memberships(app) == {"a": {"1"}}
    assert [d.request_id for d in delivery_rows(app)] == [None]
    # The CDP retries the same delivery and it goes through.
    retried = post_webhook(app, body)
    assert retried.status_code == 200, retried.get_json()
    assert memberships(app) == {"a": {"1", "2"}, "b": {"3"}}
    with app.app_context():
        app.extensions["cdp"].engine.dispose()
