"""Logging: each request at DEBUG with secrets redacted, one INFO line per outcome."""

from __future__ import annotations

import logging
import re
import time

import pytest
from flask import Flask

from cdp_bridge.secret import Secret
from cdp_bridge.webhook.signatures import sign
from tests.support.webhook import ACTIVATION, post_webhook

SIGNING = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_requests_are_logged_at_debug_with_secrets_redacted(make_app, caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(CDP_WEBHOOK_SIGNING_SECRETS=SIGNING, CDP_INLINE_WORKER=False, **ACTIVATION)
    with app.app_context():
        app.extensions["cdp"].store.create_group("shop")
    raw = b'{"audiences": [{"id": "cats", "add": ["42"]}]}'
    now = int(time.time())
    headers = {"webhook-id": "m1", "webhook-timestamp": str(now), "webhook-signature": sign(Secret(SIGNING), "m1", now, raw),
               "X-Client-Secret": ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"]}
    with caplog.at_level(logging.DEBUG, logger="cdp_bridge"):
        assert post_webhook(app, raw=raw, headers=headers).status_code == 200
        post_webhook(app, raw=raw, auth={"X-Client-Id": "test-client", "X-Client-Secret": "wrong-guess"})
    text = caplog.text
    assert "webhook request POST /cdp/webhook" in text
    assert '"id": "cats"' in text  # the body excerpt
    assert "<redacted>" in text
    for secret in (ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"], SIGNING, headers["webhook-signature"], "wrong-guess"):
        assert secret not in text
    import base64

    basic = base64.b64encode(f"test-client:{ACTIVATION['CDP_ACTIVATION_CLIENT_SECRET']}".encode()).decode()
    assert basic not in text


def test_body_excerpt_is_bounded(webhook_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    body = {"audiences": [{"id": "a", "add": [f"user-{i}" for i in range(5)]}], "padding": "x" * 10_000}
    with caplog.at_level(logging.DEBUG, logger="cdp_bridge.webhook"):
        post_webhook(webhook_app, body)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("webhook body")]
    assert len(line) < 2300
    assert "bytes)" in line


def test_one_info_line_per_outcome(webhook_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cdp_bridge.webhook"):
        answer = post_webhook(webhook_app, {"audiences": [{"id": "a", "add": ["1", None]}]}).get_json()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 1
    assert re.fullmatch(
        rf"delivery {answer['delivery_id']} applied: activation=test-client group=shop items=2 applied=1 stale=0"
        r" rejected=1 duration_ms=\d+\.\d",
        lines[0],
    )


def test_a_body_cannot_start_a_forged_log_line(webhook_app: Flask, caplog) -> None:
    forged = b'{"audiences": []}\ncdp_bridge.webhook INFO delivery 1 applied\r\x1b[2J'
    with caplog.at_level(logging.DEBUG, logger="cdp_bridge.webhook"):
        post_webhook(webhook_app, raw=forged)
        webhook_app.test_client().post("/cdp/webhook%0Acdp_bridge.webhook%20INFO%20forged")
    lines = [r.getMessage() for r in caplog.records if r.name == "cdp_bridge.webhook"]
    assert any("delivery 1 applied" in line for line in lines)  # the excerpt is logged, escaped
    for line in lines:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line, line
    assert any("\\ncdp_bridge.webhook INFO delivery 1 applied\\r\\x1b[2J" in line for line in lines)


def test_the_header_log_line_escapes_what_a_proxy_reported(webhook_app: Flask, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="cdp_bridge.webhook"):
        webhook_app.test_client().post("/cdp/webhook", environ_overrides={"REMOTE_ADDR": "1.2.3.4\nfake INFO line"})
    lines = [r.getMessage() for r in caplog.records if r.name == "cdp_bridge.webhook"]
    assert lines and all("\n" not in line for line in lines)
    assert any("1.2.3.4\\nfake INFO line" in line for line in lines)
