"""Attribution that Raptor's own templates keep (SPEC section 13), against the local fake
tracking host: offline buys on the ``.stream`` endpoint, ``setuser``, and the
recommendation module (``am``) of an ``itemclick``."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask, render_template_string

from cdp_bridge import TrackingArgumentError
from tests.support.fake_tracking_host import FakeTrackingHost
from tests.support.tracking_site import VISITOR, consenting_client, post_event
from tests.support.webhook import cdp_of

EMAIL = "zoë+shop@example.com"


def test_an_offline_buy_arrives_as_stream_with_source_webhook(make_site, host: FakeTrackingHost) -> None:
    app = make_site("client")  # any mode: no page, no script
    with app.app_context():
        queued = cdp_of(app).track_offline_buy("T-1001/7", [{"id": "cat tree", "price": "89.9", "quantity": 2},
                                                            {"id": "cat-food", "price": 14.5, "quantity": "1"}], EMAIL)
    assert queued == 2
    host.wait_for(lambda h: len(h.hits) == 2)
    ruid = quote(base64.b64encode(EMAIL.encode()).decode(), safe="")  # base64, then encodeURIComponent
    assert sorted(hit.path for hit in host.hits) == ["/123456.stream"] * 2
    queries = sorted(hit.query for hit in host.hits)
    assert queries == [
        f"p1=buy&p2=cat%20tree&p12=89.90&p13=2&p21=T-1001%2F7&ruid={ruid}&source=webhook",
        f"p1=buy&p2=cat-food&p12=14.50&p13=1&p21=T-1001%2F7&ruid={ruid}&source=webhook",
    ]


@pytest.mark.parametrize(("order_id", "lines", "email", "message"), [
    ("o1", [{"id": "a", "price": 1, "quantity": 1}], "not-an-email", "email must be an email address"),
    ("o1", [{"id": "a", "price": 1, "quantity": 1}], "a b@example.com", "email must be an email address"),
    ("o1", [{"id": "a", "price": 1, "quantity": 1}], "x@exa\u0000mple.com", "email must be an email address"),
    ("o1", [{"id": "a", "price": 1, "quantity": 1}], None, "email must be an email address"),
    ("", [{"id": "a", "price": 1, "quantity": 1}], EMAIL, "order_id is required"),
    ("o\u0007", [{"id": "a", "price": 1, "quantity": 1}], EMAIL, "lines\\[0\\]: order_id"),
    ("o1", [], EMAIL, "at least one order line"),
    ("o1", "a,b", EMAIL, "lines must be a list"),
    ("o1", [{"id": "a", "price": 1, "quantity": 1}, {"id": "b", "price": -1, "quantity": 1}], EMAIL,
     "lines\\[1\\]: price must be a finite amount"),
    ("o1", [{"id": "a", "quantity": 1}], EMAIL, "lines\\[0\\].price is required"),
], ids=["no at", "space", "control", "none", "empty order", "bad order", "no lines", "not a list", "bad second line",
        "missing price"])
def test_a_bad_offline_buy_is_refused_and_nothing_is_sent(make_site, host: FakeTrackingHost, order_id, lines, email,
                                                          message: str) -> None:
    app = make_site("server")
    with app.app_context(), pytest.raises(TrackingArgumentError, match=message):
        cdp_of(app).track_offline_buy(order_id, lines, email)
    app.extensions["cdp"].tracking.sender.stop(seconds=5)
    assert host.hits == []


def test_setuser_is_a_known_event_type_sending_the_email_as_ruid(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    with app.app_context():
        assert cdp_of(app).track("setuser", visitor_id=VISITOR, user_id=EMAIL)
    host.wait_for(lambda h: len(h.hits) == 1)
    ruid = quote(base64.b64encode(EMAIL.encode()).decode(), safe="")
    assert host.hits[0].query == f"p1=setuser&p7={quote(EMAIL, safe='')}&coid={VISITOR}&ruid={ruid}"


@pytest.mark.parametrize("mode", ["server", "hybrid"])
def test_an_itemclick_carries_its_recommendation_module_as_am(make_site, host: FakeTrackingHost, mode: str) -> None:
    app = make_site(mode)
    client = consenting_client(app, rsa=VISITOR)
    if mode == "server":
        with app.test_request_context("/", headers={"Cookie": f"consent=1; rsa={VISITOR}"}):
            render_template_string("{{ cdp_track_event('itemclick', id='sku-1', module='also viewed') }}")
    else:
        body = {"params": {"p1": "itemclick", "p2": "sku-1", "am": "also viewed"}, "url": "http://localhost/p"}
        assert post_event(client, body).status_code == 204
    host.wait_for(lambda h: len(h.hits) == 1)
    assert host.hits[0].query.startswith("p1=itemclick&p2=sku-1&am=also%20viewed&coid=")


def test_client_mode_pushes_am_to_raptors_script(make_site) -> None:
    app = make_site("client")
    with app.test_request_context("/", headers={"Cookie": "consent=1"}):
        html = render_template_string("{{ cdp_track_event('itemclick', id='sku-1', module='also_viewed') }}")
    assert '"p1":"itemclick","p2":"sku-1","am":"also_viewed"' in html


CAMPAIGN_RUID = base64.b64encode(b"reader@example.com").decode()
LANDING = f"/product?reaid=R-77.x&ruid={quote(CAMPAIGN_RUID, safe='')}&utm_source=news letter&utm_campaign=spring&x=1"


def set_cookies(response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def test_an_email_links_ids_are_kept_after_consent_and_go_with_every_later_event(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    client = consenting_client(app, rsa=VISITOR)
    landing = client.get(LANDING)
    cookies = set_cookies(landing)
    assert "rsaReaId=R-77.x;" in cookies["rsaReaId"] and "Max-Age=31536000" in cookies["rsaReaId"]
    assert f"rsaRuid={CAMPAIGN_RUID}" in cookies["rsaRuid"] and "HttpOnly" in cookies["rsaRuid"]
    host.wait_for(lambda h: len(h.hits) == 2)
    ruid = quote(CAMPAIGN_RUID, safe="")
    for hit in host.hits:  # the landing page's pageview and visit
        assert f"&ruid={ruid}&reaid=R-77.x&url=" in hit.query
        assert hit.query.endswith("&utm_source=news%20letter&utm_campaign=spring"), hit.query
    client.get("/product")  # a later page: the cookies carry the ids, the utm_* stay with the landing page
    host.wait_for(lambda h: len(h.hits) == 4)
    for hit in host.hits[2:]:
        assert f"&ruid={ruid}&reaid=R-77.x&url=http%3A%2F%2Flocalhost%2Fproduct" in hit.query
        assert "utm_" not in hit.query


def test_a_logged_in_users_id_wins_over_the_emails(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    cdp_of(app).user_id_loader(lambda: "customer-9")
    consenting_client(app, rsa=VISITOR).get(LANDING)
    host.wait_for(lambda h: len(h.hits) == 2)
    own = quote(base64.b64encode(b"customer-9").decode(), safe="")
    assert all(f"&ruid={own}&reaid=R-77.x" in hit.query for hit in host.hits)


def test_without_consent_no_campaign_cookie_and_no_event(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    response = app.test_client().get(LANDING)
    assert response.headers.getlist("Set-Cookie") == []
    app.extensions["cdp"].tracking.sender.stop(seconds=5)
    assert host.hits == []


def test_client_mode_leaves_the_campaign_cookies_to_raptors_script(make_site, host: FakeTrackingHost) -> None:
    cookies = set_cookies(consenting_client(make_site("client"), rsa=VISITOR).get(LANDING))
    assert "rsa" in cookies and "rsaReaId" not in cookies and "rsaRuid" not in cookies


@pytest.mark.parametrize("query", ["reaid=has space&ruid=not*base64", "reaid=" + "x" * 300])
def test_ids_of_the_wrong_form_are_ignored(make_site, host: FakeTrackingHost, query: str) -> None:
    app = make_site("server")
    response = consenting_client(app, rsa=VISITOR).get(f"/product?{query}")
    assert response.status_code == 200 and "rsaReaId" not in set_cookies(response)
    host.wait_for(lambda h: len(h.hits) == 2)
    assert all("reaid=" not in hit.query and "ruid=" not in hit.query for hit in host.hits)


def test_hybrid_sends_the_landing_pages_utm_and_the_kept_ids(make_site, host: FakeTrackingHost) -> None:
    app = make_site("hybrid")
    client = consenting_client(app, rsa=VISITOR)
    client.get(LANDING)  # the page sets the cookies; its events come through the shim
    body = {"params": {"p1": "visit", "p2": "cat-tree"}, "url": f"http://localhost{LANDING}"}
    assert post_event(client, body).status_code == 204
    later = {"params": {"p1": "visit", "p2": "cat-food"}, "url": "http://localhost/product"}
    assert post_event(client, later).status_code == 204
    host.wait_for(lambda h: len(h.hits) == 2)
    first, second = host.hits
    assert "&reaid=R-77.x" in first.query and first.query.endswith("&utm_source=news%20letter&utm_campaign=spring")
    assert "&reaid=R-77.x" in second.query and "utm_" not in second.query


RECOMMENDING = {"CDP_RECOMMENDATIONS_API_KEY": "attribution-recs-key-0001",
                "CDP_RECOMMENDATION_MODULES": {"also_viewed": {"method": "GetSimilarItemsWeb", "kind": "product",
                                                                "parameters": {"itemId": "product_id"}}}}
BLOCK = ("{% for p in cdp_recommendations('also_viewed', product_id='x') %}"
         "<a href=\"{{ p.cdp_href('/products/' ~ p.id) }}\"{{ p.cdp_click }}>{{ p.name }}</a>{% endfor %}")


@pytest.fixture
def recommending_site(make_site):
    from tests.support.fake_recommendations_api import FakeRecommendationsAPI, recommended

    api = FakeRecommendationsAPI(default=recommended("sku-1", "sku 2"))

    def make(mode: str, **config: Any):
        app = make_site(mode, CDP_RECOMMENDATIONS_API_URL=api.url, **{**RECOMMENDING, **config})

        @cdp_of(app).recommendation_loader("product")
        def products(ids):
            return [{"id": item_id, "name": f"Product {item_id}"} for item_id in ids]

        @app.get("/block")
        def block() -> str:
            return render_template_string("{{ cdp_head_script() }}" + BLOCK)

        return app

    yield make
    api.close()


@pytest.mark.parametrize("mode", ["client", "hybrid"])
def test_a_blocks_records_carry_their_click_data_for_the_head_scripts_listener(recommending_site, mode: str) -> None:
    page = consenting_client(recommending_site(mode), rsa=VISITOR).get("/block").get_data(as_text=True)
    assert '<a href="/products/sku-1" data-cdp-module="also_viewed" data-cdp-item="sku-1">Product sku-1</a>' in page
    assert 'data-cdp-item="sku 2"' in page
    assert 'closest("[data-cdp-module]")' in page and '(document,window.raptor,"p1","p2","am")' in page


def test_in_server_mode_a_click_goes_through_the_site_which_sends_it(recommending_site, host: FakeTrackingHost) -> None:
    app = recommending_site("server")
    client = consenting_client(app, rsa=VISITOR)
    page = client.get("/block").get_data(as_text=True)
    href = page.split('<a href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    assert href == "/cdp/click?m=also_viewed&i=sku-1&to=%2Fproducts%2Fsku-1" and "data-cdp-module" not in page
    response = client.get(href, headers={"Referer": "http://localhost/block"})
    assert response.status_code == 303 and response.headers["Location"] == "/products/sku-1"
    host.wait_for(lambda h: any(hit.params.get("p1") == "itemclick" for hit in h.hits))
    (click,) = [hit for hit in host.hits if hit.params.get("p1") == "itemclick"]
    assert re.fullmatch(f"p1=itemclick&p2=sku-1&am=also_viewed&coid={VISITOR}&sid=[0-9a-f-]{{36}}"
                        "&url=http%3A%2F%2Flocalhost%2Fblock", click.query), click.query


@pytest.mark.parametrize(("query", "status"), [
    ("m=also_viewed&i=sku-1&to=https://evil.example/", 400), ("m=also_viewed&i=sku-1&to=//evil.example/", 400),
    ("m=also_viewed&i=sku-1&to=/\\evil", 400), ("m=nope&i=sku-1&to=/", 400), ("m=also_viewed&i=&to=/", 400),
    ("m=also_viewed&i=a%00b&to=/", 400),
], ids=["absolute", "scheme-relative", "backslash", "unknown module", "no item", "control character"])
def test_the_click_route_redirects_only_to_the_site_and_refuses_bad_clicks(recommending_site, host: FakeTrackingHost,
                                                                           query: str, status: int) -> None:
    app = recommending_site("server")
    response = consenting_client(app, rsa=VISITOR).get(f"/cdp/click?{query}")
    assert response.status_code == status and "Location" not in response.headers
    app.extensions["cdp"].tracking.sender.stop(seconds=5)
    assert not any(hit.params.get("p1") == "itemclick" for hit in host.hits)


@pytest.mark.parametrize("target", [
    "/cdp/click?m=also_viewed&i=sku-2&to=/", "/shop/cdp/click?m=also_viewed&i=sku-2&to=/", "/cdp/%63lick?i=x",
    "/cdp//click", "/cdp/click/", "/products/../cdp/click", "/cdp/./click?to=/cdp/click",
], ids=["itself", "under a mount prefix", "percent-encoded", "doubled slash", "trailing slash", "dot-dot", "dot"])
def test_a_click_whose_target_is_another_click_is_refused(recommending_site, host: FakeTrackingHost, target: str) -> None:
    """A chain of /cdp/click links would send several events for one click of a person."""
    app = recommending_site("server")
    response = consenting_client(app, rsa=VISITOR).get("/cdp/click", query_string={"m": "also_viewed", "i": "sku-1",
                                                                                  "to": target})
    assert response.status_code == 400 and "Location" not in response.headers
    assert response.get_json()["message"] == "to must not be a recommendation link itself: one click sends one event"
    app.extensions["cdp"].tracking.sender.stop(seconds=5)
    assert not any(hit.params.get("p1") == "itemclick" for hit in host.hits)


def test_a_click_to_a_page_whose_name_ends_like_the_route_is_followed(recommending_site, host: FakeTrackingHost) -> None:
    response = consenting_client(recommending_site("server"), rsa=VISITOR).get(
        "/cdp/click", query_string={"m": "also_viewed", "i": "sku-1", "to": "/articles/how-to-click"})
    assert response.status_code == 303 and response.headers["Location"] == "/articles/how-to-click"


def clicks(app: Flask, count: int, visitor: str | None = None) -> list[int]:
    """``count`` clicks from one address, each by a made-up visitor unless one is given."""
    return [consenting_client(app, rsa=visitor or str(uuid.uuid4())).get(
        "/cdp/click", query_string={"m": "also_viewed", "i": f"made-up-{n}", "to": "/"}).status_code for n in range(count)]


def itemclicks(app: Flask, host: FakeTrackingHost) -> int:
    """The itemclicks the host received, once the sender has sent all it queued."""
    sender = app.extensions["cdp"].tracking.sender
    sender.stop(seconds=60)
    assert sender.dropped == 0
    return sum(1 for hit in host.hits if hit.params.get("p1") == "itemclick")


def test_clicks_from_one_address_meet_the_address_limit(recommending_site, host: FakeTrackingHost) -> None:
    """1,000 clicks from one address, each with a made-up rsa: past the address's limit
    they are refused 429, and Raptor gets exactly the admitted ones."""
    app = recommending_site("server", CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=50, CDP_TRACKING_CONCURRENCY=1)
    statuses = clicks(app, 1000)
    assert statuses[:50] == [303] * 50 and statuses[50:] == [429] * 950
    assert itemclicks(app, host) == 50


def test_clicks_of_one_visitor_meet_the_visitor_limit(recommending_site, host: FakeTrackingHost) -> None:
    app = recommending_site("server", CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=10_000, CDP_TRACKING_CONCURRENCY=1)
    refused = consenting_client(app, rsa=VISITOR)
    statuses = clicks(app, 130, visitor=VISITOR)
    assert statuses == [303] * 120 + [429] * 10
    response = refused.get("/cdp/click", query_string={"m": "also_viewed", "i": "x", "to": "/"})
    assert response.get_json() == {"error": "too_many_events", "message": "at most 120 events a minute per visitor"}
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert itemclicks(app, host) == 120


def test_clicks_without_consent_send_nothing_and_are_not_counted(recommending_site, host: FakeTrackingHost) -> None:
    app = recommending_site("server", CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=5, CDP_TRACKING_CONCURRENCY=1)
    client = app.test_client()  # no consent cookie
    statuses = [client.get("/cdp/click", query_string={"m": "also_viewed", "i": "a", "to": "/"}).status_code
                for _ in range(20)]
    assert statuses == [303] * 20
    assert itemclicks(app, host) == 0


def test_the_click_route_is_not_there_outside_server_mode(recommending_site) -> None:
    assert recommending_site("client").test_client().get("/cdp/click?m=also_viewed&i=a&to=/").status_code == 404
