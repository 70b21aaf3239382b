"""The back office in a real headless Chromium, against the demo served on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import update

import wsgi
from cdp_bridge.deliveries.inbox import IncomingDelivery
from cdp_bridge.model import ActivationDocument, AudienceChange
from tests.support.browser import ServedApp, artifact

pytestmark = pytest.mark.browser


@pytest.fixture
def demo(tmp_path) -> Iterator[ServedApp]:
    served = ServedApp(wsgi.create_app({}, instance_path=str(tmp_path / "instance")))
    yield served
    served.close()


def failed_delivery(app) -> int:
    """A queued delivery to the demo's group, marked failed as after its last try."""
    with app.app_context():
        state = app.extensions["cdp"]
        change = AudienceChange("replayed", members=("2", "3"))
        incoming = IncomingDelivery(state.settings.webhook.activations[0], ActivationDocument((change,), items=2), None, "test")
        delivery_id = state.inbox.receive(incoming, queue=True).delivery_id
        with state.engine.begin() as conn:
            d = state.tables.deliveries
            conn.execute(update(d).where(d.c.id == delivery_id).values(status="failed", attempts=5,
                                                                       error="OperationalError: the database was down"))
    return delivery_id


def log_in(page, base: str, name: str) -> None:
    page.goto(base + "/login")
    page.click(f"text={name}")
    page.click("button:has-text('Log in')")
    page.wait_for_url(base + "/")


def test_the_demo_admin_manages_groups_and_replays_a_failed_delivery(browser, demo: ServedApp) -> None:  # noqa: F811
    app = demo.server.app
    delivery_id = failed_delivery(app)
    page = browser.new_page()
    log_in(page, demo.url, "Alice Example")
    page.click("text=CDP back office")
    page.wait_for_url(demo.url + "/cdp/admin/")  # the dashboard
    page.click("nav >> text=Segment groups")
    page.wait_for_url(demo.url + "/cdp/admin/groups")
    assert page.locator("tr", has_text="demo_shop").locator(".badge").inner_text() == "protected"

    page.fill("#identifier", "Spring Sale")
    page.click("button:has-text('Create')")
    assert "lower-case letters" in page.locator("#identifier-error").inner_text()
    page.screenshot(path=str(artifact("admin-validation-error.png")), full_page=True)
    page.fill("#identifier", "spring_sale")
    page.fill("#name", "Spring sale")
    page.click("button:has-text('Create')")
    page.wait_for_url("**/cdp/admin/groups/spring_sale?created=1")
    assert page.locator("h1").inner_text().startswith("Spring sale")

    page.click("button:has-text('Delete group')")  # the box is not ticked: the browser asks for it
    assert page.url.endswith("/cdp/admin/groups/spring_sale?created=1")
    page.check("input[name=confirm]")
    page.click("button:has-text('Delete group')")
    page.wait_for_url("**/cdp/admin/groups")
    assert page.locator("tr", has_text="spring_sale").count() == 0

    page.goto(demo.url + "/cdp/admin/groups/demo_shop")  # protected: no control that can only fail
    assert "cannot be renamed or deleted here" in page.locator("#protected-note").inner_text()
    assert page.locator("#new-name").count() == 0 and page.locator("button:has-text('Delete group')").count() == 0
    page.screenshot(path=str(artifact("admin-protected-group.png")), full_page=True)
    page.click("#back-to-site")
    page.wait_for_url(demo.url + "/")

    page.goto(demo.url + "/cdp/admin/deliveries?status=failed")
    row = page.locator(f"#delivery-{delivery_id}")
    assert "the database was down" in row.inner_text()
    row.locator("button:has-text('Replay')").click()
    assert f"Delivery {delivery_id} was queued again" in page.locator(".notice").inner_text()
    deadline = time.monotonic() + 20
    while "applied" not in page.locator(f"#delivery-{delivery_id} .status").inner_text():
        assert time.monotonic() < deadline, "the replayed delivery was not applied"
        page.wait_for_timeout(200)
        page.goto(demo.url + "/cdp/admin/deliveries")
    page.screenshot(path=str(artifact("admin-deliveries.png")), full_page=True)
    with app.app_context():
        assert app.extensions["cdp"].store.members("demo_shop", "replayed") == ["2", "3"]
    page.close()


def test_a_customer_is_refused_and_an_anonymous_visitor_too(browser, demo: ServedApp) -> None:  # noqa: F811
    page = browser.new_page()
    assert page.goto(demo.url + "/cdp/admin/groups").status == 403
    log_in(page, demo.url, "Bob Example")
    assert page.locator("text=CDP back office").count() == 0
    assert page.goto(demo.url + "/cdp/admin/deliveries").status == 403
    page.close()


STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'none'"


@pytest.fixture
def strict_demo(tmp_path) -> Iterator[ServedApp]:
    """The demo behind the strictest policy a host would set: nothing inline, nothing from elsewhere."""
    app = wsgi.create_app({}, instance_path=str(tmp_path / "instance"))

    @app.after_request
    def strict(response):  # noqa: ANN001, ANN202
        from flask import request

        if request.path.startswith("/cdp/admin"):
            response.headers["Content-Security-Policy"] = STRICT_CSP
        return response

    served = ServedApp(app)
    yield served
    served.close()


def test_the_dashboard_draws_its_charts_with_text_alternatives_and_nothing_from_elsewhere(browser, strict_demo: ServedApp) -> None:  # noqa: F811
    """The landing page of the back office in Chromium, under a policy that allows nothing
    inline and nothing from another origin: the charts are drawn (boxes of a real size),
    each is an image whose accessible name holds its figures, every request the page
    makes stays on the site's origin, and the browser reports no violation."""
    import re

    demo = strict_demo
    app = demo.server.app
    with app.app_context():  # the CDP pushes one more member into "Big spenders"
        state = app.extensions["cdp"]
        change = AudienceChange("9a1f0c37", add=("3",))
        incoming = IncomingDelivery(state.settings.webhook.activations[0], ActivationDocument((change,), items=1), None, "test")
        assert state.inbox.receive(incoming).delivery_id is not None
    page = browser.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("response", lambda response: problems.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)  # the browser's own ask
    page.on("console", lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None)
    log_in(page, demo.url, "Alice Example")
    requested.clear()
    answer = page.goto(demo.url + "/cdp/admin/")
    assert answer is not None and answer.status == 200 and answer.headers["content-security-policy"] == STRICT_CSP
    chart = page.get_by_role("img", name=re.compile(r"^Deliveries applied Deliveries applied: 1 in all\."))
    assert chart.count() == 1 and chart.is_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 70
    bar = chart.locator("rect[data-value='1']")
    bar_box = bar.bounding_box()
    assert bar.count() == 1 and bar_box is not None and bar_box["height"] > 20  # the day's bar, drawn to the top
    spenders = page.get_by_role("img", name="Members of Big spenders (demo_shop/9a1f0c37)")
    assert spenders.count() == 1 and spenders.is_visible()
    name = spenders.evaluate("svg => svg.querySelector('desc').textContent")
    assert re.search(r": 2\.$", name), name  # alice, then carol: the figure now, named in the text alternative
    assert requested and all(url.startswith(demo.url + "/") for url in requested), requested
    assert not problems, problems
    page.screenshot(path=str(artifact("admin-dashboard.png")), full_page=True)
    page.goto(demo.url + "/cdp/admin/?period=24h")
    assert page.locator("nav.periods a[aria-current='page']").inner_text() == "24 hours"
    page.close()
