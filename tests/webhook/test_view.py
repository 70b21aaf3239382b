"""POST /cdp/webhook: every row of SPEC section 3's answer table, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import time

import pytest
from flask import Flask

from cdp_bridge.secret import Secret
from cdp_bridge.webhook.signatures import sign
from tests.support.webhook import ACTIVATION, basic_auth, delivery_rows, memberships, post_webhook

CATS = {"id": "5d822e81", "name": "Cat owners", "add": ["14", "15"], "remove": ["10"]}
SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_small_delivery_is_applied_before_the_answer(webhook_app: Flask) -> None:
    body = {
        "segment_group_identifier": "shop",
        "request_id": "req-1",
        "audiences": [CATS, {"id": "77aa0001", "name": "VIP", "members": ["1", "2", 3]}, {"id": "0000dead", "deleted": True}],
    }
    response = post_webhook(webhook_app, body)
    assert response.status_code == 200
    answer = response.get_json()
    assert answer == {
        "status": "applied",
        "delivery_id": answer["delivery_id"],
        "items": 6,
        "applied": 3,
        "stale": 0,
        "rejected": [],
        "rejected_count": 0,
        "rejected_by_reason": {},
    }
    assert memberships(webhook_app) == {"5d822e81": {"14", "15"}, "77aa0001": {"1", "2", "3"}}
    (delivery,) = delivery_rows(webhook_app)
    assert (delivery.id, delivery.status, delivery.items, delivery.request_id) == (answer["delivery_id"], "applied", 6, "req-1")


def test_segment_metadata_is_kept(webhook_app: Flask) -> None:
    audience = {**CATS, "description": "People with cats", "tags": ["pets"], "profile_count": 1200,
                "updated_at": "2026-11-28T11:00:00+01:00", "sequence": 42}
    assert post_webhook(webhook_app, {"audiences": [audience]}).status_code == 200
    with webhook_app.app_context():
        (segment,) = webhook_app.extensions["cdp"].store.list_segments("shop")
    assert (segment.name, segment.description, segment.tags, segment.profile_count, segment.last_sequence) == (
        "Cat owners", "People with cats", ("pets",), 1200, 42)
    assert segment.source_updated_at.isoformat() == "2026-11-28T10:00:00"


def test_segment_is_named_by_its_id_until_a_name_is_known(webhook_app: Flask) -> None:
    post_webhook(webhook_app, {"audiences": [{"id": "abc", "add": ["1"]}]})
    with webhook_app.app_context():
        assert webhook_app.extensions["cdp"].store.list_segments("shop")[0].name == "abc"
    post_webhook(webhook_app, {"audiences": [{"id": "abc", "name": "Named"}]})
    with webhook_app.app_context():
        assert webhook_app.extensions["cdp"].store.list_segments("shop")[0].name == "Named"


def test_large_delivery_is_queued_and_answered_202(webhook_app: Flask) -> None:
    ids = [str(i) for i in range(10)]  # the threshold is 10 items
    response = post_webhook(webhook_app, {"audiences": [{"id": "big", "members": ids}]})
    assert response.status_code == 202
    answer = response.get_json()
    assert answer == {"status": "queued", "delivery_id": answer["delivery_id"], "items": 10}
    assert memberships(webhook_app) == {}
    (delivery,) = delivery_rows(webhook_app)
    assert delivery.status == "queued"


def test_repeated_request_id_is_a_duplicate_and_changes_nothing(webhook_app: Flask) -> None:
    first = post_webhook(webhook_app, {"request_id": "once", "audiences": [CATS]}).get_json()
    post_webhook(webhook_app, {"audiences": [{"id": "5d822e81", "remove": ["14"]}]})
    again = post_webhook(webhook_app, {"request_id": "once", "audiences": [CATS]})
    assert again.status_code == 200
    assert again.get_json() == {"status": "duplicate", "delivery_id": first["delivery_id"]}
    assert memberships(webhook_app) == {"5d822e81": {"15"}}
    assert len(delivery_rows(webhook_app)) == 2


@pytest.mark.parametrize("header", ["Idempotency-Key", "webhook-id"])
def test_idempotency_key_and_webhook_id_headers_deduplicate(webhook_app: Flask, header: str) -> None:
    first = post_webhook(webhook_app, {"audiences": [CATS]}, headers={header: "key-7"}).get_json()
    again = post_webhook(webhook_app, {"audiences": [CATS]}, headers={header: "key-7"}).get_json()
    assert again == {"status": "duplicate", "delivery_id": first["delivery_id"]}


def test_request_ids_are_scoped_to_their_activation(make_app) -> None:
    activations = [
        {"client_id": "a", "client_secret": "secret-a-0123456789", "segment_group_identifier": "one"},
        {"client_id": "b", "client_secret": "secret-b-0123456789", "segment_group_identifier": "two"},
    ]
    app = make_app(CDP_ACTIVATIONS=activations, CDP_INLINE_WORKER=False)
    with app.app_context():
        app.extensions["cdp"].store.create_group("one")
        app.extensions["cdp"].store.create_group("two")
    body = {"request_id": "same", "audiences": [{"id": "s", "add": ["1"]}]}
    assert post_webhook(app, body, auth=basic_auth("a", "secret-a-0123456789")).get_json()["status"] == "applied"
    assert post_webhook(app, body, auth=basic_auth("b", "secret-b-0123456789")).get_json()["status"] == "applied"
    assert memberships(app, "one") == {"s": {"1"}} and memberships(app, "two") == {"s": {"1"}}


def test_client_id_headers_authenticate_too(webhook_app: Flask) -> None:
    auth = {"X-Client-Id": "test-client", "X-Client-Secret": ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"]}
    assert post_webhook(webhook_app, {"audiences": [CATS]}, auth=auth).status_code == 200


@pytest.mark.parametrize(
    "auth",
    [
        {},
        basic_auth("test-client", "wrong"),
        basic_auth("other-client", ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"]),
        {"X-Client-Id": "test-client", "X-Client-Secret": "wrong"},
        {"Authorization": "Bearer test-client-secret-value"},
    ],
    ids=["none", "wrong-secret", "wrong-id", "wrong-header-secret", "bearer"],
)
def test_missing_or_wrong_credentials_get_401(webhook_app: Flask, auth) -> None:
    response = post_webhook(webhook_app, {"audiences": [CATS]}, auth=auth)
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized"}
    assert response.headers["WWW-Authenticate"] == 'Basic realm="cdp"'
    assert delivery_rows(webhook_app) == [] and memberships(webhook_app) == {}


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_other_methods_get_405(webhook_app: Flask, method: str) -> None:
    response = webhook_app.test_client().open("/cdp/webhook", method=method, headers=basic_auth())
    assert response.status_code == 405
    assert response.get_json() == {"error": "method_not_allowed"}
    assert response.headers["Allow"] == "POST"


def test_body_over_the_limit_gets_413(make_app) -> None:
    app = make_app(CDP_WEBHOOK_MAX_BYTES=100, **ACTIVATION)
    body = {"audiences": [{"id": "x", "add": [str(i) for i in range(50)]}]}
    response = post_webhook(app, body)
    assert response.status_code == 413
    assert response.get_json() == {"error": "payload_too_large"}
    assert delivery_rows(app) == []


def test_body_at_the_limit_is_read(make_app) -> None:
    raw = b'{"audiences": []}'
    app = make_app(CDP_WEBHOOK_MAX_BYTES=len(raw), **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop")
    assert post_webhook(app, raw=raw).status_code == 200


def test_chunked_body_over_the_limit_gets_413(make_app) -> None:
    app = make_app(CDP_WEBHOOK_MAX_BYTES=100, **ACTIVATION)
    body = b'{"audiences": [{"id": "x", "add": [' + b'"1",' * 40 + b'"2"]}]}'
    response = app.test_client().post(
        "/cdp/webhook", input_stream=io.BytesIO(body), headers={**basic_auth(), "Transfer-Encoding": "chunked"},
        content_type="application/json", environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert delivery_rows(app) == []


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""])
def test_other_media_types_get_415(webhook_app: Flask, content_type: str) -> None:
    response = post_webhook(webhook_app, {"audiences": [CATS]}, content_type=content_type)
    assert response.status_code == 415
    assert response.get_json() == {"error": "unsupported_media_type"}


def test_json_with_charset_is_accepted(webhook_app: Flask) -> None:
    assert post_webhook(webhook_app, {"audiences": [CATS]}, content_type="application/json; charset=utf-8").status_code == 200


def test_group_in_body_must_be_the_activations(webhook_app: Flask) -> None:
    response = post_webhook(webhook_app, {"segment_group_identifier": "other", "audiences": [CATS]})
    assert response.status_code == 422
    assert response.get_json()["error"] == "segment_group_mismatch"
    assert "'other'" in response.get_json()["message"]
    assert memberships(webhook_app) == {}


def test_group_that_was_never_created_gets_422_and_is_logged(make_app) -> None:
    app = make_app(CDP_INLINE_WORKER=False, **ACTIVATION)
    response = post_webhook(app, {"request_id": "r1", "audiences": [CATS]})
    assert response.status_code == 422
    answer = response.get_json()
    assert answer["error"] == "unknown_segment_group"
    assert "'shop'" in answer["message"]
    (delivery,) = delivery_rows(app)
    assert delivery.status == "rejected" and delivery.request_id is None


def test_rejected_delivery_can_be_replayed_once_the_group_exists(make_app) -> None:
    app = make_app(CDP_INLINE_WORKER=False, **ACTIVATION)
    delivery_id = post_webhook(app, {"audiences": [CATS]}).get_json()["delivery_id"]
    with app.app_context():
        state = app.extensions["cdp"]
        state.store.create_group("shop")
        state.inbox.replay(delivery_id)
    result = app.test_cli_runner().invoke(args=["cdp", "worker", "--once"])
    assert "Processed 1 delivery" in result.output
    assert memberships(app) == {"5d822e81": {"14", "15"}}


def test_signature_is_required_when_signing_secrets_are_set(make_app) -> None:
    app = make_app(CDP_WEBHOOK_SIGNING_SECRETS=[SIGNING_SECRET], CDP_INLINE_WORKER=False, **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop")
    raw = b'{"audiences": [{"id": "s", "add": ["1"]}]}'
    assert post_webhook(app, raw=raw).status_code == 401
    now = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now),
               "webhook-signature": sign(Secret(SIGNING_SECRET), "msg_1", now, raw)}
    assert post_webhook(app, raw=raw, headers=headers).status_code == 200
    tampered = raw.replace(b'"1"', b'"2"')
    assert post_webhook(app, raw=tampered, headers={**headers, "webhook-id": "msg_2"}).status_code == 401
    old = now - 301
    stale = {"webhook-id": "msg_3", "webhook-timestamp": str(old),
             "webhook-signature": sign(Secret(SIGNING_SECRET), "msg_3", old, raw)}
    assert post_webhook(app, raw=raw, headers=stale).status_code == 401
    assert memberships(app) == {"s": {"1"}}


def test_valid_signature_without_credentials_is_still_401(make_app) -> None:
    app = make_app(CDP_WEBHOOK_SIGNING_SECRETS=[SIGNING_SECRET], **ACTIVATION)
    raw = b'{"audiences": []}'
    now = int(time.time())
    headers = {"webhook-id": "m", "webhook-timestamp": str(now), "webhook-signature": sign(Secret(SIGNING_SECRET), "m", now, raw)}
    assert post_webhook(app, raw=raw, headers=headers, auth={}).status_code == 401


def test_webhook_id_doubles_as_idempotency_key_with_signatures(make_app) -> None:
    app = make_app(CDP_WEBHOOK_SIGNING_SECRETS=[SIGNING_SECRET], CDP_INLINE_WORKER=False, **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop")
    raw = b'{"audiences": [{"id": "s", "add": ["1"]}]}'
    now = int(time.time())
    headers = {"webhook-id": "msg_same", "webhook-timestamp": str(now),
               "webhook-signature": sign(Secret(SIGNING_SECRET), "msg_same", now, raw)}
    first = post_webhook(app, raw=raw, headers=headers).get_json()
    assert post_webhook(app, raw=raw, headers=headers).get_json() == {"status": "duplicate", "delivery_id": first["delivery_id"]}


def test_blueprint_placed_elsewhere_serves_the_webhook_there(database_url: str) -> None:
    from cdp_bridge import CDP

    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI=database_url, CDP_INLINE_WORKER=False, **ACTIVATION)
    cdp = CDP(app, register_blueprint=False)
    app.register_blueprint(cdp.blueprint, url_prefix="/hooks/cdp")
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("shop")
    response = app.test_client().post("/hooks/cdp/webhook", json={"audiences": [CATS]}, headers=basic_auth())
    assert response.status_code == 200
    with app.app_context():
        cdp.state.db.engine.dispose()
