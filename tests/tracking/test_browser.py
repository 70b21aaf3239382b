"""Tracking in a real headless Chromium against the demo served on loopback."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

import wsgi
from demo.models import PRODUCTS
from tests.support.browser import RaptorStub, ServedApp, artifact, demo_login
from tests.tracking.test_helpers import HOSTILE

pytestmark = pytest.mark.browser


@pytest.fixture
def stub() -> Iterator[RaptorStub]:
    server = RaptorStub()
    yield server
    server.close()


@pytest.fixture
def demo(tmp_path, stub: RaptorStub) -> Iterator[ServedApp]:
    app = wsgi.create_app({"CDP_TRACKING_SCRIPT_URL": stub.script_url}, instance_path=str(tmp_path / "instance"))
    served = ServedApp(app)
    yield served
    served.close()


def event_types(stub: RaptorStub) -> list[str]:
    return [e["params"]["p1"] if e["event"].lower() == "trackevent" else e["event"] for e in stub.events]


def test_before_consent_nothing_loads_and_events_wait_in_the_queue(browser, demo: ServedApp, stub: RaptorStub) -> None:
    page = browser.new_page()
    page.goto(demo.url + "/products/cat-tree")
    page.wait_for_load_state("load")
    assert stub.script_requests == 0
    queue = page.evaluate("window.raptor.q.map(function (e) { return {event: e.event, params: e.params}; })")
    assert queue == [
        {"event": "trackevent", "params": {"p1": "pageview"}},
        {"event": "trackEvent", "params": {
            "p1": "visit", "p2": "cat-tree", "p3": 'Cat tree "Skyscraper"', "p4": "pets#Pets;cats#Cats",
            "p6": "EUR", "p8": "Purrfect", "p12": "89.90", "p15": "true"}},
    ]
    assert page.locator("#cdp-consent-banner").is_visible()
    page.screenshot(path=str(artifact("demo-consent-banner.png")), full_page=True)
    page.close()


def test_accepting_consent_loads_the_script_once_and_sends_every_queued_event(
    browser, demo: ServedApp, stub: RaptorStub
) -> None:
    page = browser.new_page()
    page.goto(demo.url + "/products/dog-leash")
    page.click("#cdp-consent-accept")
    stub.wait_for(lambda s: len(s.events) >= 2)
    assert stub.script_requests == 1
    assert stub.events[0] == {"event": "trackevent", "params": {"p1": "pageview"}}
    assert stub.events[1]["params"] == {
        "p1": "visit", "p2": "dog-leash", "p3": "Reflective dog leash", "p4": "pets#Pets;dogs#Dogs",
        "p6": "EUR", "p8": "Woofer", "p12": "19.00", "p15": "true"}
    assert not page.locator("#cdp-consent-banner").is_visible()
    page.evaluate("document.dispatchEvent(new CustomEvent('enableTracking'))")
    page.evaluate("window.raptor.push('trackEvent', {p1: 'marker'})")
    stub.wait_for(lambda s: any(e["params"] == {"p1": "marker"} for e in s.events))
    assert page.locator(f"script[src='{stub.script_url}']").count() == 1
    assert stub.script_requests == 1
    assert "cdp_consent=yes" in page.evaluate("document.cookie")
    page.close()


def test_declining_consent_loads_nothing_and_is_remembered(browser, demo: ServedApp, stub: RaptorStub) -> None:
    page = browser.new_page()
    page.goto(demo.url + "/products/dog-leash")
    page.click("#cdp-consent-decline")
    assert not page.locator("#cdp-consent-banner").is_visible()
    assert "cdp_consent=no" in page.evaluate("document.cookie")
    page.reload()
    assert page.locator("#cdp-consent-banner").count() == 0  # the choice is kept: no banner again
    assert page.locator(f"script[src='{stub.script_url}']").count() == 0
    assert page.evaluate("window.raptor.q.length") >= 2  # events wait in the queue, unsent
    assert stub.script_requests == 0 and stub.events == []
    page.close()


def test_with_the_consent_cookie_the_script_loads_at_once(browser, demo: ServedApp, stub: RaptorStub) -> None:
    context = browser.new_context()
    context.add_cookies([{"name": "cdp_consent", "value": "yes", "url": demo.url}])
    page = context.new_page()
    demo_login(page, demo.url, "Bob Example")
    stub.wait_for(lambda s: "visit" in event_types(s))
    assert page.locator("#cdp-consent-banner").count() == 0
    assert {"event": "setRuid", "params": "2"} in stub.events
    visit = next(e for e in stub.events if e["params"] != "2" and e["params"].get("p1") == "visit")
    assert visit["params"] == {"p1": "visit", "p2": "/", "p7": "2"}

    page.goto(demo.url + "/products/cat-food")
    page.click("button:has-text('Add to basket')")
    stub.wait_for(lambda s: "basket" in event_types(s))
    basket = next(e["params"] for e in stub.events if e["event"] == "trackEvent" and e["params"]["p1"] == "basket")
    assert basket == {"p1": "basket", "p2": "cat-food", "p7": "2", "p10": "cat-food"}
    page.click("#checkout")
    stub.wait_for(lambda s: "buy" in event_types(s))
    buy = next(e["params"] for e in stub.events if e["event"] == "trackEvent" and e["params"]["p1"] == "buy")
    assert {k: buy[k] for k in ("p2", "p5", "p6", "p7", "p12", "p13")} == {
        "p2": "cat-food", "p5": "14.50", "p6": "EUR", "p7": "2", "p12": "14.50", "p13": "1"}
    assert len(buy["p21"]) == 10
    assert stub.script_requests == 5  # once per page: login, landing, product, basket, order
    context.close()


def test_hostile_product_data_executes_nothing(browser, tmp_path, stub: RaptorStub, monkeypatch) -> None:
    for index, hostile in enumerate(HOSTILE):
        monkeypatch.setitem(PRODUCTS, f"hostile-{index}", {
            "id": f"hostile-{index}", "name": hostile, "brand": hostile, "price": Decimal("1"),
            "category_path": [(hostile, hostile)], "in_stock": True})
    app = wsgi.create_app({"CDP_TRACKING_SCRIPT_URL": stub.script_url}, instance_path=str(tmp_path / "instance"))
    served = ServedApp(app)
    context = browser.new_context()
    context.add_cookies([{"name": "cdp_consent", "value": "yes", "url": served.url}])
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        for index, hostile in enumerate(HOSTILE):
            page.goto(f"{served.url}/products/hostile-{index}")
            stub.wait_for(lambda s, index=index: any(
                isinstance(e["params"], dict) and e["params"].get("p2") == f"hostile-{index}" for e in s.events))
            visit = next(e["params"] for e in stub.events
                         if isinstance(e["params"], dict) and e["params"].get("p2") == f"hostile-{index}")
            assert visit["p3"] == hostile and visit["p8"] == hostile
            assert page.evaluate("typeof window.pwned") == "undefined"
            assert page.locator("h1").inner_text() == hostile.strip() or hostile.strip() == ""
    finally:
        context.close()
        served.close()
    assert dialogs == []


def test_raptor_loads_under_a_strict_nonce_csp(browser, tmp_path, stub: RaptorStub) -> None:
    from flask import Flask, render_template_string
    from flask_talisman import Talisman

    from cdp_bridge import CDP

    app = Flask("csp_site")
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/csp.sqlite3", CDP_ACCOUNT_NUMBER="1234",
                      CDP_TRACKING_SCRIPT_URL=stub.script_url, CDP_INLINE_WORKER=False)
    CDP(app)
    # Only scripts carrying the nonce may run; Raptor's script is loaded by the helper.
    Talisman(app, force_https=False, content_security_policy={"script-src": "'none'", "connect-src": "*"},
             content_security_policy_nonce_in=["script-src"])
    app.add_url_rule("/", "page", lambda: render_template_string(
        "<html><head>{{ cdp_head_script() }}</head><body>"
        "{{ cdp_main_script(true) }}{{ cdp_track_visit('csp-page') }}"
        "<script>window.unsafe = 1</script></body></html>"))
    served = ServedApp(app)
    page = browser.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security Policy" in message.text else None)
    try:
        page.goto(served.url + "/")
        stub.wait_for(lambda s: any(e["params"] == {"p1": "visit", "p2": "csp-page"} for e in s.events))
        assert stub.script_requests == 1
        assert page.evaluate("typeof window.unsafe") == "undefined"  # the CSP is really enforced
        assert all("raptor" not in v for v in violations)
    finally:
        page.close()
        served.close()


def test_a_visitor_who_looked_at_cats_sees_the_offer_without_logging_in(browser, tmp_path) -> None:
    """The demo as it ships: its stand-in script sets the rsa cookie and sends the events;
    the stand-in for Raptor's CDP API then says the visitor is in "Cat owners"."""
    served = ServedApp(wsgi.create_app({}, instance_path=str(tmp_path / "instance")))
    try:
        page = browser.new_page()
        page.goto(served.url + "/")
        assert page.locator("#personal-offer").count() == 0
        page.goto(served.url + "/products/cat-tree")
        with page.expect_response(lambda response: response.url.endswith("/demo-raptor/events")) as sent:
            page.click("#cdp-consent-accept")
        assert sent.value.status == 204
        cookies = {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", cookies["rsa"])
        page.goto(served.url + "/")
        assert page.locator("#personal-offer").is_visible()
        assert page.locator("text=Log in").is_visible()  # still anonymous
        page.screenshot(path=str(artifact("demo-visitor-offer.png")), full_page=True)
        page.close()
    finally:
        served.close()


def test_chromium_encodes_as_the_server_side_sender_does(browser) -> None:
    """The server-side sender must encode every value as Raptor's script would, with
    encodeURIComponent: the table of tricky values, checked in the browser itself."""
    from cdp_bridge.tracking.wire import encode_uri_component
    from tests.tracking.test_server_side import ENCODINGS

    values = [value for value, _ in ENCODINGS]
    page = browser.new_page()
    assert page.evaluate("values => values.map(encodeURIComponent)", values) == [encode_uri_component(v) for v in values]
    page.close()


def test_hybrid_mode_sends_the_pages_events_through_the_site(browser, tmp_path) -> None:
    """CDP_TRACKING_MODE=hybrid: no Raptor script; after consent the shim posts the
    page's events to /cdp/track, and the server forwards them with the visitor's ids."""
    from tests.support.fake_tracking_host import FakeTrackingHost

    host = FakeTrackingHost()
    app = wsgi.create_app({"CDP_TRACKING_MODE": "hybrid", "CDP_SERVER_TRACKING_URL": host.url},
                          instance_path=str(tmp_path / "instance"))
    served = ServedApp(app)
    try:
        page = browser.new_page()
        page.goto(served.url + "/products/cat-tree")
        assert page.locator("script[src*='raptor']").count() == 0
        page.click("#cdp-consent-accept")
        host.wait_for(lambda h: {hit.params.get("p1") for hit in h.hits} >= {"pageview", "visit"})
        cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
        visit = next(hit.params for hit in host.hits if hit.params.get("p1") == "visit")
        assert visit["p2"] == "cat-tree" and visit["p4"] == "pets#Pets;cats#Cats" and visit["p12"] == "89.90"
        assert {hit.params["coid"] for hit in host.hits} == {cookies["rsa"]["value"]}
        assert {hit.params["sid"] for hit in host.hits} == {cookies["rsaSession"]["value"]}
        assert visit["url"] == served.url + "/products/cat-tree"
        assert cookies["rsa"]["expires"] - time.time() > 300 * 86400  # renewed by the server, not Safari's 7 days
        page.goto(served.url + "/")  # the next page sends at once: consent is known
        host.wait_for(lambda h: sum(hit.params.get("p2") == "/" for hit in h.hits) == 1)
        page.close()
    finally:
        served.close()
        host.close()
