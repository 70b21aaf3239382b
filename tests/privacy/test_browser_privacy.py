"""Privacy in a real headless Chromium (SPEC section 14): withdrawing consent in the demo's
banner expires every cookie cdp_bridge set; "forget me" in the demo's account page; the
hybrid shim keeps ``push``'s third argument's module name."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask, render_template_string

import wsgi
from tests.support.browser import ServedApp, artifact, demo_login
from tests.support.fake_tracking_host import FakeTrackingHost

pytestmark = pytest.mark.browser

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.fixture
def demo(tmp_path) -> Iterator[ServedApp]:
    """The demo as it ships (client mode, its stand-in for Raptor)."""
    served = ServedApp(wsgi.create_app({}, instance_path=str(tmp_path / "instance")))
    yield served
    served.close()


def cookies(page) -> dict[str, str]:
    return {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}


def test_withdrawing_consent_in_the_banner_expires_every_cookie(browser, demo: ServedApp) -> None:
    page = browser.new_page()
    page.goto(demo.url + "/products/cat-tree")
    with page.expect_response(lambda response: response.url.endswith("/demo-raptor/events")):
        page.click("#cdp-consent-accept")
    page.goto(demo.url + "/products/cat-tree")  # a page after consent: the server keeps rsa
    assert re.fullmatch(UUID, cookies(page)["rsa"])
    withdraw = page.locator("#cdp-consent-withdraw")
    assert withdraw.is_visible() and page.locator("#cdp-consent-banner").count() == 0
    with page.expect_navigation():
        withdraw.click()
    left = cookies(page)
    assert left.get("cdp_consent") == "no"
    assert not {"rsa", "rsaSession", "rsaRuid", "rsaReaId", "rsaReaid"} & set(left), left
    assert page.locator("#cdp-consent-withdraw").count() == 0
    page.screenshot(path=str(artifact("demo-consent-withdrawn.png")), full_page=True)
    page.close()


def test_forget_me_erases_the_customer_and_the_back_office_lists_no_identifier(browser, demo: ServedApp) -> None:
    bob = browser.new_context()
    bob.add_cookies([{"name": "cdp_consent", "value": "yes", "url": demo.url}])
    page = bob.new_page()
    demo_login(page, demo.url, "Bob Example")
    known_as = cookies(page)["rsa"]
    page.goto(demo.url + "/account")
    with page.expect_navigation():
        page.click("#forget-me")
    assert page.locator("text=You have been forgotten").is_visible()
    assert page.locator("text=Raptor has been asked to delete you too.").is_visible()
    # The visitor id that named Bob is gone; still consenting, the visitor is someone new.
    assert cookies(page).get("rsa") != known_as and page.locator("text=Log in").is_visible()
    bob.close()

    alice = browser.new_context()
    admin = alice.new_page()
    demo_login(admin, demo.url, "Alice Example")
    admin.goto(demo.url + "/cdp/admin/erasures")
    row = admin.locator("#erasure-1")
    assert row.is_visible()
    text = row.inner_text()
    assert re.search(r"[0-9a-f]{12}…", text) and "bob" not in admin.content().lower().replace("bob example", "")
    for _ in range(50):  # the inline worker asks the stand-in for Raptor
        if "accepted" in admin.locator("#erasure-1").inner_text():
            break
        admin.wait_for_timeout(100)
        admin.reload()
    assert "accepted" in admin.locator("#erasure-1").inner_text()
    admin.screenshot(path=str(artifact("back-office-erasures.png")), full_page=True)
    alice.close()


SHIM_PAGE = """<html><head>{{ cdp_head_script() }}</head><body>
<button id="click" onclick="window.raptor.push('trackEvent', {p1: 'itemclick', p2: 'sku-1'}, {moduleName: 'also_viewed'})">
go</button></body></html>"""


def test_the_hybrid_shim_sends_the_module_name_of_pushs_third_argument(browser, tmp_path) -> None:
    host = FakeTrackingHost()
    app = Flask("hybrid_site", instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/site.sqlite3",
                      CDP_ACCOUNT_NUMBER="123456", CDP_CONSENT_COOKIE="consent", CDP_TRACKING_MODE="hybrid",
                      CDP_SERVER_TRACKING_URL=host.url, CDP_INLINE_WORKER=False)
    from cdp_bridge import CDP

    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
    app.add_url_rule("/", "page", lambda: render_template_string(SHIM_PAGE))
    served = ServedApp(app)
    try:
        context = browser.new_context()
        context.add_cookies([{"name": "consent", "value": "1", "url": served.url}])
        page = context.new_page()
        page.goto(served.url + "/")
        page.click("#click")
        host.wait_for(lambda h: any(hit.params.get("p1") == "itemclick" for h_ in [h] for hit in h_.hits))
        click = next(hit for hit in host.hits if hit.params.get("p1") == "itemclick")
        assert (click.params["p2"], click.params["am"]) == ("sku-1", "also_viewed")
        context.close()
    finally:
        served.close()
        host.close()


def test_a_cookieless_hybrid_page_sends_its_events_with_no_cookie(browser, tmp_path) -> None:
    """CDP_TRACK_WITHOUT_CONSENT=cookieless in hybrid mode: before consent the shim posts
    the page's events at once, sets no cookie, and the server sends them without ids."""
    host = FakeTrackingHost()
    app = wsgi.create_app({"CDP_TRACKING_MODE": "hybrid", "CDP_SERVER_TRACKING_URL": host.url,
                           "CDP_TRACK_WITHOUT_CONSENT": "cookieless"}, instance_path=str(tmp_path / "instance"))
    served = ServedApp(app)
    try:
        page = browser.new_page()
        page.goto(served.url + "/products/cat-tree")
        host.wait_for(lambda h: {hit.params.get("p1") for hit in h.hits} >= {"pageview", "visit"})
        assert not {"rsa", "rsaSession"} & set(cookies(page))
        assert all("coid" not in hit.params and "sid" not in hit.params for hit in host.hits)
        page.close()
    finally:
        served.close()
        host.close()
