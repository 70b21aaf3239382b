"""A body shorter than its Content-Length is a 400 (the test client; gunicorn in test_gunicorn_e2e)."""

from __future__ import annotations

import base64
import json

from flask import Flask

from tests.support.webhook import delivery_rows, memberships


def test_a_body_shorter_than_its_content_length_is_refused(webhook_app: Flask) -> None:
    whole = json.dumps({"audiences": [{"id": "vip", "add": ["1"]}]}).encode()
    response = webhook_app.test_client().post(
        "/cdp/webhook", data=whole, content_type="application/json",
        headers={"Authorization": "Basic " + base64.b64encode(b"test-client:test-client-secret-value").decode()},
        environ_overrides={"CONTENT_LENGTH": str(len(whole) + 10)},
    )
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_json"
    assert memberships(webhook_app) == {} and delivery_rows(webhook_app) == []
