"""Holes an attacker or a careless host could open: each test fails if its hole reopens.

The back office mounted under another name, a signed delivery replayed under a fresh
key, a host using Flask-WTF, text that is not Unicode, bodies of rejected ids, the
back office's own query string, and log lines forged from a request body.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from pathlib import Path

import pytest
from flask import Flask
from flask_wtf import CSRFProtect
from sqlalchemy import update

from cdp_bridge import CDP
from cdp_bridge.secret import Secret
from cdp_bridge.webhook.signatures import sign
from tests.support.webhook import ACTIVATION, cdp_of, delivery_rows, memberships, post_webhook

SIGNING_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def csrf_from(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def group_identifiers(app: Flask) -> list[str]:
    with app.app_context():
        return [g.identifier for g in app.extensions["cdp"].store.list_groups()]


# -- 1. the back office is guarded wherever it is mounted ---------------------------------


@pytest.fixture
def crm_app(tmp_path: Path, database_url: str) -> Flask:
    """cdp_bridge placed by the host as blueprint ``crm`` at ``/crm``."""
    app = Flask("crm_site", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=database_url, SECRET_KEY="test", CDP_INLINE_WORKER=False)
    cdp = CDP(app, register_blueprint=False)
    app.register_blueprint(cdp.blueprint, name="crm", url_prefix="/crm")
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("shop", "Shop")
    yield app
    with app.app_context():
        app.extensions["cdp"].db.engine.dispose()


CRM_PAGES = ["/crm/admin/", "/crm/admin/groups", "/crm/admin/groups/shop", "/crm/admin/users?user_id=1",
             "/crm/admin/deliveries", "/crm/admin/groups/shop/members?segment=x", "/crm/admin/static/cdp/admin.css"]


def test_under_another_name_without_a_guard_the_back_office_is_not_served(crm_app: Flask) -> None:
    client = crm_app.test_client()
    for path in CRM_PAGES:
        assert client.get(path).status_code == 404, path
    assert client.post("/crm/admin/groups", data={"identifier": "sneaky"}).status_code == 404
    assert group_identifiers(crm_app) == ["shop"]


def test_under_another_name_a_refusing_guard_answers_403(crm_app: Flask) -> None:
    cdp_of(crm_app).admin_guard(lambda: False)
    client = crm_app.test_client()
    for path in CRM_PAGES:
        assert client.get(path).status_code == 403, path
    assert client.post("/crm/admin/groups", data={"identifier": "sneaky"}).status_code == 403
    assert client.post("/crm/admin/groups/shop/delete").status_code == 403
    assert group_identifiers(crm_app) == ["shop"]


def test_under_another_name_a_post_needs_the_csrf_token_and_links_stay_relative(crm_app: Flask) -> None:
    cdp_of(crm_app).admin_guard(lambda: True)
    client = crm_app.test_client()
    assert client.post("/crm/admin/groups", data={"identifier": "sneaky"}).status_code == 400
    assert client.post("/crm/admin/groups", data={"identifier": "sneaky", "csrf_token": "forged"}).status_code == 400
    assert group_identifiers(crm_app) == ["shop"]
    page = client.get("/crm/admin/groups").get_data(as_text=True)
    assert 'href="/crm/admin/groups/shop"' in page and 'action="/crm/admin/groups"' in page
    assert '"/cdp/' not in page
    created = client.post("/crm/admin/groups", data={"identifier": "news", "csrf_token": csrf_from(page)})
    assert created.status_code == 302 and created.headers["Location"].startswith("/crm/admin/groups/news")
    assert group_identifiers(crm_app) == ["news", "shop"]


# -- 2. a signed delivery cannot be replayed under a new key ------------------------------


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


# -- 3. inside a host that uses Flask-WTF --------------------------------------------------


@pytest.mark.parametrize("order", ["csrfprotect-first", "cdp-first"])
def test_a_host_with_flask_wtf_csrfprotect_still_receives_deliveries(tmp_path: Path, sqlite_url: str,
                                                                     order: str) -> None:
    app = Flask("wtf_site", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, SECRET_KEY="test", CDP_INLINE_WORKER=False, **ACTIVATION)
    if order == "csrfprotect-first":
        CSRFProtect(app)
        cdp = CDP(app)
    else:
        cdp = CDP(app)
        CSRFProtect(app)

    @app.post("/contact")
    def contact() -> str:
        return "sent"

    @cdp.admin_guard
    def everyone() -> bool:
        return True

    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("shop", "Shop")
    answer = post_webhook(app, {"audiences": [{"id": "vip", "add": ["1"]}]})
    assert answer.status_code == 200 and answer.get_json()["status"] == "applied"
    client = app.test_client()
    assert client.post("/contact").status_code == 400  # the host's own forms stay protected
    token = csrf_from(client.get("/cdp/admin/groups").get_data(as_text=True))
    created = client.post("/cdp/admin/groups", data={"identifier": "news", "csrf_token": token})
    assert created.status_code == 302  # one token satisfies the host's CSRFProtect and the back office
    assert client.post("/contact", data={"csrf_token": token}).get_data(as_text=True) == "sent"
    assert group_identifiers(app) == ["news", "shop"]


# -- 4. text that is not valid Unicode is rejected alone -----------------------------------


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


# -- 5. a body of rejected ids costs no more than a body of good ones ----------------------


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


# -- 6. a broken body is a 400 (the test client; gunicorn in test_gunicorn_e2e) -------------


def test_a_body_shorter_than_its_content_length_is_refused(webhook_app: Flask) -> None:
    whole = json.dumps({"audiences": [{"id": "vip", "add": ["1"]}]}).encode()
    response = webhook_app.test_client().post(
        "/cdp/webhook", data=whole, content_type="application/json",
        headers={"Authorization": "Basic " + base64.b64encode(b"test-client:test-client-secret-value").decode()},
        environ_overrides={"CONTENT_LENGTH": str(len(whole) + 10)},
    )
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_json"
    assert memberships(webhook_app) == {} and delivery_rows(webhook_app) == []


# -- 7. the back office survives its own query string ---------------------------------------


@pytest.fixture
def admin_client(webhook_app: Flask):
    cdp_of(webhook_app).admin_guard(lambda: True)
    return webhook_app.test_client()


@pytest.mark.parametrize("path", ["/cdp/admin/deliveries", "/cdp/admin/groups/shop",
                                  "/cdp/admin/groups/shop/members?segment=vip&"])
@pytest.mark.parametrize("query", ["page=99999999999999999999", "page=2&endpoint=x", "page=2&_method=POST",
                                   "page=-5", "page=1e9", "page=" + "9" * 5000, "page=%00", "status=&page=2"])
def test_no_query_string_makes_a_500(webhook_app: Flask, admin_client, path: str, query: str) -> None:
    post_webhook(webhook_app, {"audiences": [{"id": "vip", "add": ["1"]}]})
    joiner = "" if path.endswith("&") else "?"
    response = admin_client.get(path + joiner + query)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    page = response.get_data(as_text=True)
    assert "endpoint=" not in page and "_method" not in page


def test_pager_links_keep_only_their_own_arguments(webhook_app: Flask, admin_client) -> None:
    for i in range(51):
        post_webhook(webhook_app, {"audiences": [{"id": f"s{i:03d}", "add": ["1"]}]})
    page = admin_client.get("/cdp/admin/deliveries?page=1&endpoint=x&status=applied").get_data(as_text=True)
    assert 'href="/cdp/admin/deliveries?page=2&amp;status=applied"' in page
    last = admin_client.get("/cdp/admin/groups/shop?page=99999999999999999999").get_data(as_text=True)
    assert "Page 1000000" in last and 'href="/cdp/admin/groups/shop?page=999999"' in last


@pytest.mark.parametrize("delivery_id", ["99999999999999999999999", "9223372036854775808"])
def test_an_out_of_range_delivery_id_is_not_found(admin_client, delivery_id: str) -> None:
    assert admin_client.get(f"/cdp/admin/deliveries/{delivery_id}").status_code == 404
    token = csrf_from(admin_client.get("/cdp/admin/groups").get_data(as_text=True))
    assert admin_client.post(f"/cdp/admin/deliveries/{delivery_id}/replay",
                             data={"csrf_token": token}).status_code == 404


def test_segment_ids_with_slashes_and_dots_link_to_their_own_members(webhook_app: Flask, admin_client) -> None:
    awkward = ["a/b", "..", "x//y", "../..", "/lead", "trail/", "%2F", "?q=1#f"]
    post_webhook(webhook_app, {"audiences": [{"id": s, "add": [f"member of {s}"]} for s in awkward]})
    group_page = admin_client.get("/cdp/admin/groups/shop").get_data(as_text=True)
    links = re.findall(r'<td><a href="([^"]+)">', group_page)
    assert len(links) == len(awkward)
    for link in links:
        members = admin_client.get(link.replace("&amp;", "&"))
        assert members.status_code == 200, link
        text = members.get_data(as_text=True)
        segment = re.search(r"<h1>Members of <code>shop/(.*?)</code></h1>", text).group(1)
        assert f"member of {segment}" in text


# -- 11. a body cannot forge log lines -------------------------------------------------------


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

