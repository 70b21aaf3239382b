"""Attribution that Raptor's own templates keep (SPEC section 13), against the local fake
tracking host: offline buys on the ``.stream`` endpoint, ``setuser``, and the
recommendation module (``am``) of an ``itemclick``."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from flask import render_template_string

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
