"""The back office: guard, CSRF, every route and every refusal, through the test client."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from tests.support.webhook import ACTIVATION, cdp_of, delivery_rows, memberships, post_webhook

ADMIN_PAGES = ["/cdp/admin/", "/cdp/admin/?period=24h", "/cdp/admin/dashboard.csv?chart=members", "/cdp/admin/groups",
               "/cdp/admin/groups/shop", "/cdp/admin/users?user_id=1",
               "/cdp/admin/deliveries", "/cdp/admin/groups/shop/members?segment=cats"]


@pytest.fixture
def admin_app(webhook_app: Flask) -> Flask:
    """The webhook app with a guard that admits requests carrying X-Admin: yes."""
    from flask import request

    cdp_of(webhook_app).admin_guard(lambda: request.headers.get("X-Admin") == "yes")
    post_webhook(webhook_app, {"audiences": [{"id": "cats", "name": "Cat owners", "members": ["1", "2"],
                                              "description": "Likes cats", "tags": ["pets"], "profile_count": 2}]})
    return webhook_app


@pytest.fixture
def client(admin_app: Flask):
    client = admin_app.test_client()
    client.environ_base["HTTP_X_ADMIN"] = "yes"
    return client


def token(client, path: str = "/cdp/admin/groups") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True)).group(1)


def test_without_a_guard_the_back_office_is_not_mounted(webhook_app: Flask) -> None:
    client = webhook_app.test_client()
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 404, path
    assert client.post("/cdp/admin/groups", data={"identifier": "x"}).status_code == 404
    assert post_webhook(webhook_app, {"audiences": []}).status_code == 200  # the webhook is unaffected


def test_everyone_the_guard_does_not_admit_gets_403(admin_app: Flask) -> None:
    client = admin_app.test_client()
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 403, path
    assert client.post("/cdp/admin/groups", data={"identifier": "x"}).status_code == 403
    assert client.post("/cdp/admin/deliveries/1/replay").status_code == 403


def test_the_guard_admits_to_every_page(client) -> None:
    for path in ADMIN_PAGES:
        assert client.get(path).status_code == 200, path
    assert client.get("/cdp/admin/static/cdp/admin.css").status_code == 200


def test_groups_list_marks_protected_groups(client) -> None:
    page = client.get("/cdp/admin/groups").get_data(as_text=True)
    assert '<a href="/cdp/admin/groups/shop">shop</a>' in page
    assert ">protected</span>" in page


def test_create_a_group(client, admin_app: Flask) -> None:
    response = client.post("/cdp/admin/groups", data={"identifier": "newsletter", "name": "Newsletter",
                                                      "csrf_token": token(client)})
    assert response.status_code == 302
    assert client.get(response.headers["Location"]).status_code == 200
    with admin_app.app_context():
        assert admin_app.extensions["cdp"].store.get_group("newsletter").name == "Newsletter"


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"identifier": "Bad Id"}, "identifier", "lower-case letters"),
    ({"identifier": ""}, "identifier", "non-empty"),
    ({"identifier": "shop"}, "identifier", "already exists"),
    ({"identifier": "ok_id", "name": "bell\x07"}, "name", "control characters"),
])
def test_validation_messages_stand_beside_their_field(client, admin_app: Flask, form, field, message) -> None:
    response = client.post("/cdp/admin/groups", data={**form, "csrf_token": token(client)})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(rf'<p class="field-error" id="{field}-error">[^<]*{re.escape(message)}', page)
    with admin_app.app_context():
        assert [g.identifier for g in admin_app.extensions["cdp"].store.list_groups()] == ["shop"]


def test_a_post_without_the_csrf_token_is_refused(client, admin_app: Flask) -> None:
    for path, data in [("/cdp/admin/groups", {"identifier": "sneaky"}),
                       ("/cdp/admin/groups/shop/rename", {"name": "x"}),
                       ("/cdp/admin/groups/shop/delete", {}),
                       ("/cdp/admin/deliveries/1/replay", {})]:
        assert client.post(path, data=data).status_code == 400, path
        assert client.post(path, data={**data, "csrf_token": "forged"}).status_code == 400, path
    with admin_app.app_context():
        assert [g.identifier for g in admin_app.extensions["cdp"].store.list_groups()] == ["shop"]


def test_rename_and_delete_a_group(client, admin_app: Flask) -> None:
    csrf = token(client)
    client.post("/cdp/admin/groups", data={"identifier": "temp", "csrf_token": csrf})
    assert client.post("/cdp/admin/groups/temp/rename", data={"name": "Temporary", "csrf_token": csrf}).status_code == 302
    assert "Temporary" in client.get("/cdp/admin/groups/temp").get_data(as_text=True)
    bad = client.post("/cdp/admin/groups/temp/rename", data={"name": "  ", "csrf_token": csrf})
    assert bad.status_code == 400 and "non-empty" in bad.get_data(as_text=True)
    unconfirmed = client.post("/cdp/admin/groups/temp/delete", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and "nothing was deleted" in unconfirmed.get_data(as_text=True)
    assert client.get("/cdp/admin/groups/temp").status_code == 200
    page = client.get("/cdp/admin/groups/temp").get_data(as_text=True)
    assert 'name="confirm" value="yes" required' in page and "Delete with its 0 segments" in page
    assert client.post("/cdp/admin/groups/temp/delete", data={"csrf_token": csrf, "confirm": "yes"}).status_code == 302
    assert client.get("/cdp/admin/groups/temp").status_code == 404


def test_a_protected_group_refuses_rename_and_delete(client, admin_app: Flask) -> None:
    csrf = token(client)
    page = client.get("/cdp/admin/groups/shop").get_data(as_text=True)
    assert 'id="protected-note"' in page and "Rename" not in page and "Delete group" not in page  # no dead controls
    assert 'href="/" id="back-to-site"' in page
    for action, data in [("rename", {"name": "Hacked"}), ("delete", {"confirm": "yes"})]:
        response = client.post(f"/cdp/admin/groups/shop/{action}", data={**data, "csrf_token": csrf})
        assert response.status_code == 409
        assert "Cannot modify protected segment group" in response.get_data(as_text=True)
    assert memberships(admin_app) == {"cats": {"1", "2"}}
    with admin_app.app_context():
        assert admin_app.extensions["cdp"].store.get_group("shop").name == "Shop"


def test_group_page_shows_segments_with_metadata_and_member_counts(client) -> None:
    page = client.get("/cdp/admin/groups/shop").get_data(as_text=True)
    row = re.search(r"<tr>\s*<td><a href=\"/cdp/admin/groups/shop/members\?segment=cats\">cats</a></td>(.*?)</tr>", page, re.S).group(1)
    assert "Cat owners" in row and "Likes cats" in row and "<td>2</td>" in row and "pets" in row


def test_segments_and_members_are_paged(client, admin_app: Flask) -> None:
    for start in range(0, 60, 6):  # small deliveries, applied at once (the threshold is 10 items)
        post_webhook(admin_app, {"audiences": [{"id": f"s{i:03d}", "add": ["1"]} for i in range(start, start + 6)]})
    first = client.get("/cdp/admin/groups/shop").get_data(as_text=True)
    second = client.get("/cdp/admin/groups/shop?page=2").get_data(as_text=True)
    assert "s000" in first and "s048" in first and "s049" not in first and "Next" in first
    assert "s049" in second and "s059" in second and "Previous" in second
    members = client.get("/cdp/admin/groups/shop/members?segment=cats").get_data(as_text=True)
    assert '<a href="/cdp/admin/users?user_id=1">1</a>' in members
    assert client.get("/cdp/admin/groups/shop/members?segment=ghost").status_code == 404


def test_members_are_paged_by_user_id_with_a_jump_and_a_kept_count(client, admin_app: Flask) -> None:
    """Next / previous by key (``after`` / ``before``), a jump to a user id (``at``), the
    count kept with each change; bad keys answer 400 naming the argument."""
    ids = [f"u{n:03d}" for n in range(120)]
    post_webhook(admin_app, {"audiences": [{"id": "dogs", "members": ids}]})  # queued (>= 10 items)
    assert admin_app.test_cli_runner().invoke(args=["cdp", "worker", "--once"]).exit_code == 0
    path = "/cdp/admin/groups/shop/members?segment=dogs"
    first = client.get(path).get_data(as_text=True)
    assert "120 members" in first and "u000" in first and "u049" in first and "u050" not in first
    assert 'href="/cdp/admin/groups/shop/members?segment=dogs&amp;after=u049" rel="next"' in first
    assert 'rel="prev"' not in first
    second = client.get(path + "&after=u049").get_data(as_text=True)
    assert "u050" in second and "u099" in second and "u049" not in second and "u100" not in second
    assert 'href="/cdp/admin/groups/shop/members?segment=dogs&amp;before=u050" rel="prev"' in second
    back = client.get(path + "&before=u050").get_data(as_text=True)
    assert "u000" in back and "u049" in back and "u050" not in back
    jump = client.get(path + "&at=u110").get_data(as_text=True)
    assert "u110" in jump and "u119" in jump and "u109" not in jump and 'rel="next"' not in jump
    assert 'value="u110"' in jump and 'before=u110" rel="prev"' in jump
    post_webhook(admin_app, {"audiences": [{"id": "dogs", "remove": ["u000", "u001"], "add": ["x1"]}]})
    assert "119 members" in client.get(path).get_data(as_text=True)
    for key in ("after", "before", "at"):
        refused = client.get(path + f"&{key}=%07")
        assert refused.status_code == 400 and key in refused.get_data(as_text=True)


def test_a_users_segments(client) -> None:
    page = client.get("/cdp/admin/users?user_id=2").get_data(as_text=True)
    assert "<td>shop</td><td>cats</td><td>Cat owners</td>" in page
    assert "is in no segment" in client.get("/cdp/admin/users?user_id=99").get_data(as_text=True)
    assert client.get("/cdp/admin/users?user_id=%07").status_code == 400


def test_delivery_log_filters_by_status_and_replays(client, admin_app: Flask) -> None:
    from sqlalchemy import update

    post_webhook(admin_app, {"audiences": [{"id": "dogs", "add": [str(i) for i in range(12)]}]})  # queued (>= 10)
    queued = delivery_rows(admin_app)[0]
    with admin_app.app_context():
        state = admin_app.extensions["cdp"]
        with state.engine.begin() as conn:
            d = state.tables.deliveries
            conn.execute(update(d).where(d.c.id == queued.id).values(status="failed", error="OperationalError: boom"))
    filtered = client.get("/cdp/admin/deliveries?status=failed")
    assert filtered.status_code == 200  # the filter is not the HTTP status
    page = filtered.get_data(as_text=True)
    assert f'id="delivery-{queued.id}"' in page and "OperationalError: boom" in page and "Replay" in page
    assert "applied" not in client.get("/cdp/admin/deliveries?status=failed").get_data(as_text=True).split("<tbody>")[1]
    assert client.get("/cdp/admin/deliveries?status=bogus").status_code == 400
    response = client.post(f"/cdp/admin/deliveries/{queued.id}/replay", data={"csrf_token": token(client)})
    assert response.status_code == 302 and f"replayed={queued.id}" in response.headers["Location"]
    assert delivery_rows(admin_app)[0].status == "queued"
    again = client.post(f"/cdp/admin/deliveries/{queued.id}/replay", data={"csrf_token": token(client)})
    assert again.status_code == 409
    assert client.post("/cdp/admin/deliveries/9999/replay", data={"csrf_token": token(client)}).status_code == 404


def test_no_secret_appears_on_any_page(client, admin_app: Flask) -> None:
    post_webhook(admin_app, {"audiences": [{"id": "x", "add": [None]}]})
    secret = ACTIVATION["CDP_ACTIVATION_CLIENT_SECRET"]
    for path in ADMIN_PAGES + ["/cdp/admin/deliveries?status=applied"]:
        assert secret not in client.get(path).get_data(as_text=True), path


def test_the_link_back_to_the_site_is_a_setting(make_app) -> None:
    app = make_app(CDP_ADMIN_SITE_URL="https://shop.example/home", **ACTIVATION)
    cdp_of(app).admin_guard(lambda: True)
    page = app.test_client().get("/cdp/admin/groups").get_data(as_text=True)
    assert 'href="https://shop.example/home" id="back-to-site"' in page


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_link_back_that_is_neither_a_url_nor_a_path_is_refused(make_app) -> None:
    from cdp_bridge import ConfigurationError

    with pytest.raises(ConfigurationError, match="CDP_ADMIN_SITE_URL: expected an http.s. URL or a path starting with /"):
        make_app(CDP_ADMIN_SITE_URL="javascript:alert(1)")
