"""The demo's attribution (SPEC section 13): a newsletter link whose later buy carries the
email's ids, and a till sale sent as offline buys; Raptor's tracking host is the local
fake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

import wsgi
from tests.support.browser import stop_background_threads
from tests.support.fake_tracking_host import FakeTrackingHost

VISITOR = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"


@pytest.fixture
def demo(tmp_path: Path, host: FakeTrackingHost) -> Iterator[Flask]:
    app = wsgi.create_app({"CDP_TRACKING_MODE": "server", "CDP_SERVER_TRACKING_URL": host.url},
                          instance_path=str(tmp_path / "instance"))
    yield app
    stop_background_threads(app)


def test_the_newsletter_links_ids_go_with_the_later_buy(demo: Flask, host: FakeTrackingHost) -> None:
    client = demo.test_client()
    client.set_cookie("cdp_consent", "yes")
    client.set_cookie("rsa", VISITOR)
    landing = client.get("/").get_data(as_text=True)
    link = landing.split('id="email-link"', 1)[1].split('href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    client.get(link)
    client.post("/basket", data={"product_id": "cat-food", "quantity": "2"})
    client.post("/checkout")
    assert client.get("/order").status_code == 200
    # The buy goes out ahead of the pages' events (its own lane): wait for all of them, by
    # letting the sender send everything queued and stop, then read what the host got.
    sender = demo.extensions["cdp"].tracking.sender
    sender.stop(seconds=20)
    assert sender.dropped == 0
    landing_hits = [hit for hit in host.hits if "utm_campaign" in hit.params]
    assert landing_hits and all(hit.params["utm_campaign"] == "spring" for hit in landing_hits)
    (buy,) = [hit for hit in host.hits if hit.params.get("p1") == "buy"]
    assert buy.params["reaid"] == "demo-reaid-0001" and buy.params["ruid"] == "cmVhZGVyQGV4YW1wbGUuY29t"
    assert buy.params["p2"] == "cat-food" and buy.params["p13"] == "2" and "utm_campaign" not in buy.params


def test_a_till_sale_is_sent_as_offline_buys(demo: Flask, host: FakeTrackingHost) -> None:
    runner = demo.test_cli_runner()
    result = runner.invoke(args=["shop", "till-sale", "--order", "R-0042", "--email", "carol@example.com",
                                 "--product", "cat-tree", "--product", "cat-tree", "--product", "dog-leash"])
    assert result.exit_code == 0, result.output
    assert "Sent 2 offline buy event(s) for receipt R-0042." in result.output
    host.wait_for(lambda h: len(h.hits) == 2)
    assert sorted(hit.query for hit in host.hits) == [
        "p1=buy&p2=cat-tree&p6=EUR&p12=89.90&p13=2&p21=R-0042&ruid=Y2Fyb2xAZXhhbXBsZS5jb20%3D&source=webhook",
        "p1=buy&p2=dog-leash&p6=EUR&p12=19.00&p13=1&p21=R-0042&ruid=Y2Fyb2xAZXhhbXBsZS5jb20%3D&source=webhook",
    ]
    assert {hit.path for hit in host.hits} == {"/1234.stream"}


@pytest.mark.parametrize(("args", "message"), [
    (["--email", "not an email", "--product", "cat-tree"], "email must be an email address"),
    (["--email", "carol@example.com", "--product", "unicorn"], "unknown product(s): unicorn"),
])
def test_a_bad_till_sale_is_refused_and_nothing_is_sent(demo: Flask, host: FakeTrackingHost, args: list[str],
                                                        message: str) -> None:
    result = demo.test_cli_runner().invoke(args=["shop", "till-sale", "--order", "R-1", *args])
    assert result.exit_code == 2 and message in result.output
    demo.extensions["cdp"].tracking.sender.stop(seconds=5)
    assert host.hits == []
