"""Failed webhook authentications are limited per client address (SPEC section 12): after
CDP_WEBHOOK_AUTH_FAILURES_PER_MINUTE wrong tries an address is answered 429 with
Retry-After; good credentials are never limited, and other addresses are not affected."""

from __future__ import annotations

from flask import Flask

from cdp_bridge.metrics import RATE_LIMITED
from tests.support.webhook import ACTIVATION, basic_auth, memberships, post_webhook

BODY = {"audiences": [{"id": "77aa0001", "name": "VIP", "members": ["1", "2"]}]}
WRONG = basic_auth(secret="not-the-secret")


def post_from(app: Flask, address: str, auth: dict[str, str], body: object = BODY):
    return app.test_client().post("/cdp/webhook", json=body, headers=auth, environ_base={"REMOTE_ADDR": address})


def test_an_address_with_too_many_wrong_tries_is_answered_429(make_app) -> None:
    app = make_app(CDP_WEBHOOK_AUTH_FAILURES_PER_MINUTE=3, CDP_INLINE_WORKER=False, **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
    before = RATE_LIMITED.labels("webhook")._value.get()
    statuses = [post_from(app, "10.1.1.1", WRONG).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    refused = post_from(app, "10.1.1.1", {})  # no credentials at all is a failure too
    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_failed_authentications"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "3 failed authentications a minute" in refused.get_json()["message"]
    assert RATE_LIMITED.labels("webhook")._value.get() == before + 3
    # Good credentials from the limited address are served, and applied.
    good = post_from(app, "10.1.1.1", basic_auth())
    assert good.status_code == 200, good.get_data(as_text=True)
    assert set().union(*memberships(app).values()) == {"1", "2"}
    # Another address has its own count.
    assert post_from(app, "10.1.1.2", WRONG).status_code == 401


def test_good_credentials_never_count_against_the_limit(make_app) -> None:
    app = make_app(CDP_WEBHOOK_AUTH_FAILURES_PER_MINUTE=1, CDP_INLINE_WORKER=False, **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
    assert [post_webhook(app, BODY).status_code for _ in range(5)] == [200] * 5
    assert post_from(app, "127.0.0.1", WRONG).status_code == 401  # the first failure is still a 401
