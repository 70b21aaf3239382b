"""The demo's recommendation blocks in a real headless Chromium, against the demo as it
ships: its stand-in for Raptor's script sends the visitor's events, and its stand-in for
the Recommendations API (on a loopback port of its own) answers the blocks."""

from __future__ import annotations

import io
import json
import time

import pytest

import wsgi
from tests.support.browser import ServedApp, artifact

pytestmark = pytest.mark.browser


def block_items(page, block: str) -> list[str]:  # noqa: ANN001 - a Playwright page
    return [text.strip() for text in page.locator(f"#{block} li").all_inner_texts()]


def test_accepting_consent_fills_the_blocks_for_this_visitor(browser, tmp_path) -> None:
    served = ServedApp(wsgi.create_app({}, instance_path=str(tmp_path / "instance")))
    try:
        page = browser.new_page()
        page.goto(served.url + "/products/aquarium")
        # "Others also viewed" needs no visitor: it shows before any consent.
        assert block_items(page, "also-viewed") == ["Cat tree \"Skyscraper\"", "Salmon cat food, 2 kg",
                                                    "Reflective dog leash"]
        with page.expect_response(lambda response: response.url.endswith("/demo-raptor/events")) as sent:
            page.click("#cdp-consent-accept")
        assert sent.value.status == 204
        page.goto(served.url + "/products/cat-tree")  # the visit is sent at once now: consent is known
        page.wait_for_timeout(300)
        page.goto(served.url + "/basket")
        viewed = block_items(page, "recently-viewed")
        assert viewed[:2] == ["Cat tree \"Skyscraper\"", "Aquarium starter kit"]  # newest first
        page.goto(served.url + "/")
        picks = block_items(page, "for-you")
        assert picks[:2] == ["Cat tree \"Skyscraper\"", "Salmon cat food, 2 kg"]  # a cat visitor's picks
        page.screenshot(path=str(artifact("demo-recommendations-consent.png")), full_page=True)
        page.close()
    finally:
        served.close()


def test_declining_consent_shows_the_sites_own_fallback(browser, tmp_path) -> None:
    served = ServedApp(wsgi.create_app({}, instance_path=str(tmp_path / "instance")))
    try:
        page = browser.new_page()
        page.goto(served.url + "/products/cat-tree")
        page.click("#cdp-consent-decline")
        page.goto(served.url + "/")
        assert page.locator("#for-you li.fallback").is_visible()
        page.goto(served.url + "/basket")
        assert page.locator("#recently-viewed").count() == 0
        page.goto(served.url + "/products/cat-tree")
        assert block_items(page, "also-viewed")[0] == "Salmon cat food, 2 kg"  # needs no visitor
        page.screenshot(path=str(artifact("demo-recommendations-declined.png")), full_page=True)
        page.close()
    finally:
        served.close()


def test_a_click_in_a_block_sends_an_itemclick_with_its_module(browser, tmp_path) -> None:
    """Client mode, the demo as it ships: the head script's listener pushes the click to
    (the stand-in for) Raptor's script, which posts it before the next page loads."""
    served = ServedApp(wsgi.create_app({}, instance_path=str(tmp_path / "instance")))
    try:
        page = browser.new_page()
        page.goto(served.url + "/products/aquarium")
        with page.expect_response(lambda response: response.url.endswith("/demo-raptor/events")):
            page.click("#cdp-consent-accept")
        link = page.locator("#also-viewed li a").first
        assert link.get_attribute("data-cdp-module") == "also_viewed"
        with page.expect_request(lambda request: request.url.endswith("/demo-raptor/events")
                                 and "itemclick" in (request.post_data or "")) as sent:
            link.click()
        events = json.loads(sent.value.post_data)["events"]
        assert events == [{"event": "trackEvent", "params": {"p1": "itemclick", "p2": "cat-tree", "am": "also_viewed"}}]
        page.wait_for_url(served.url + "/products/cat-tree")
        page.close()
    finally:
        served.close()


def test_in_hybrid_mode_the_click_goes_through_the_sites_own_endpoint(browser, tmp_path) -> None:
    """The click's keepalive request can outlive its page, and a browser need not report the
    answer to a page that has gone: the site itself records what its endpoint answered."""
    app = wsgi.create_app({"CDP_TRACKING_MODE": "hybrid"}, instance_path=str(tmp_path / "instance"))
    answered: list[tuple[bytes, str]] = []
    site = app.wsgi_app

    def record_tracking_answers(environ, start_response):  # noqa: ANN001, ANN202 - WSGI
        """Keep each ``/cdp/track`` body with the status the site answered it."""
        if environ["PATH_INFO"] != "/cdp/track":
            return site(environ, start_response)
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)

        def recording_start(status, headers, exc_info=None):  # noqa: ANN001, ANN202 - WSGI
            answered.append((body, status))
            return start_response(status, headers, exc_info)
        return site(environ, recording_start)

    app.wsgi_app = record_tracking_answers  # type: ignore[method-assign]
    served = ServedApp(app)
    try:
        page = browser.new_page()
        page.goto(served.url + "/products/aquarium")
        page.click("#cdp-consent-accept")
        link = page.locator("#also-viewed li a").first
        with page.expect_request(lambda request: request.url.endswith("/cdp/track")
                                 and "itemclick" in (request.post_data or "")) as sent:
            link.click()
        assert json.loads(sent.value.post_data)["params"] == {"p1": "itemclick", "p2": "cat-tree", "am": "also_viewed"}
        page.wait_for_url(served.url + "/products/cat-tree")
        clicks = wait_for(lambda: [status for body, status in answered if b'"itemclick"' in body])
        assert clicks == ["204 NO CONTENT"]
        page.close()
    finally:
        served.close()


def wait_for(found, seconds: float = 10.0):  # noqa: ANN001, ANN201 - any non-empty answer
    """Poll ``found`` until it answers something non-empty, or give up after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (answer := found()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return answer


def test_the_order_page_shows_what_other_customers_have_also_purchased(tmp_path) -> None:
    """Ibexa's "Other customers have also purchased" block (by product code), on the demo's
    order confirmation: the stand-in answers with products from other shelves."""
    app = wsgi.create_app({}, instance_path=str(tmp_path / "instance"))
    try:
        client = app.test_client()
        client.post("/basket", data={"product_id": "cat-tree", "quantity": "1"})
        client.post("/checkout")
        html = client.get("/order").get_data(as_text=True)
        assert "Other customers have also purchased" in html
        links = html.split('id="also-bought"', 1)[1].split("</section>", 1)[0]
        from demo.models import PRODUCTS

        elsewhere = [p for p in PRODUCTS.values() if p["category_path"] != PRODUCTS["cat-tree"]["category_path"]]
        assert links.count('data-cdp-module="also_bought"') == len(elsewhere) >= 2
        assert all(f'data-cdp-item="{product["id"]}"' in links for product in elsewhere) and "Cat tree" not in links
    finally:
        from tests.support.browser import stop_background_threads

        stop_background_threads(app)
