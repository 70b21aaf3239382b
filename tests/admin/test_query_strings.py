"""The back office survives its own query string: no query makes a 500, pagers keep their own arguments."""

from __future__ import annotations

import re

import pytest
from flask import Flask

from tests.support.webhook import cdp_of, post_webhook


def csrf_from(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


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
