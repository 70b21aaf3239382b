"""Replays: a signed delivery resent under a fresh Idempotency-Key is a duplicate; unsigned ones honour the key."""

from __future__ import annotations

import json
import time

import pytest
from flask import Flask

from cdp_bridge.secret import Secret
from cdp_bridge.webhook.signatures import sign
from tests.support.webhook import ACTIVATION, memberships, post_webhook

SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def signed_app(make_app) -> Flask:
    app = make_app(CDP_INLINE_WORKER=False, CDP_WEBHOOK_SIGNING_SECRETS=[SIGNING_SECRET], **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop", "Shop")
    return app


def signed_headers(message_id: str, body: bytes) -> dict[str, str]:
    now = int(time.time())
    return {"webhook-id": message_id, "webhook-timestamp": str(now),
            "webhook-signature": sign(Secret(SIGNING_SECRET), message_id, now, body)}


@pytest.mark.parametrize("with_request_id", [False, True], ids=["webhook-id-only", "body-request-id"])
def test_a_signed_delivery_resent_with_a_fresh_idempotency_key_is_a_duplicate(signed_app: Flask,
                                                                               with_request_id: bool) -> None:
    def body(change: dict, request_id: str) -> bytes:
        document = {"audiences": [{"id": "vip", **change}]}
        if with_request_id:
            document["request_id"] = request_id
        return json.dumps(document).encode()

    add, remove = body({"add": ["X"]}, "r-add"), body({"remove": ["X"]}, "r-remove")
    add_headers = signed_headers("msg_add", add)
    assert post_webhook(signed_app, raw=add, headers=add_headers).get_json()["status"] == "applied"
    assert post_webhook(signed_app, raw=remove, headers=signed_headers("msg_remove", remove)).status_code == 200
    replay = post_webhook(signed_app, raw=add, headers={**add_headers, "Idempotency-Key": "fresh-key-1"})
    assert replay.status_code == 200 and replay.get_json()["status"] == "duplicate"
    assert memberships(signed_app) == {"vip": set()}


def test_unsigned_deliveries_still_honour_the_idempotency_key(webhook_app: Flask) -> None:
    body = {"audiences": [{"id": "vip", "add": ["X"]}]}
    assert post_webhook(webhook_app, body, headers={"Idempotency-Key": "k1"}).get_json()["status"] == "applied"
    assert post_webhook(webhook_app, body, headers={"Idempotency-Key": "k1"}).get_json()["status"] == "duplicate"
