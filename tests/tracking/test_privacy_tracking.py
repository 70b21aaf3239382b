"""Tracking no more than the visitor allowed (SPEC section 14): a withdrawn consent expires
every cookie and sends nothing; cookieless tracking before consent in each mode; the
cookie domain; ``rsaReaId``; the email identity; no event names a forgotten person."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from flask import Flask, make_response, render_template_string

from cdp_bridge import ValidationError
from tests.support.fake_tracking_host import FakeTrackingHost
from tests.support.tracking_site import PRODUCT_PAGE, SESSION, VISITOR, consenting_client, post_event
from tests.support.webhook import cdp_of

EMAIL = "zoe@example.com"
EMAIL_RUID = base64.b64encode(EMAIL.encode()).decode()
EVERY_COOKIE = {"rsa": VISITOR, "rsaSession": SESSION, "rsaRuid": EMAIL_RUID, "rsaReaId": "R-1", "rsaReaid": "R-0"}


def set_cookies(response) -> list[str]:
    return response.headers.getlist("Set-Cookie")


def expired(response) -> dict[str, list[str]]:
    """Each cookie the response expires, with its Set-Cookie lines."""
    found: dict[str, list[str]] = {}
    for line in set_cookies(response):
        if "Max-Age=0" in line or "Expires=Thu, 01 Jan 1970" in line:
            found.setdefault(line.split("=", 1)[0], []).append(line)
    return found


def quiet(app: Flask, host: FakeTrackingHost) -> list[str]:
    """Every query the host got, once the app's sender sent what it had."""
    app.extensions["cdp"].tracking.sender.stop(seconds=5)
    return [hit.query for hit in host.hits]


@pytest.mark.parametrize("mode", ["client", "server", "hybrid"])
def test_a_withdrawn_consent_expires_every_cookie_and_sends_nothing(make_site, host: FakeTrackingHost,
                                                                    mode: str) -> None:
    app = make_site(mode, CDP_COOKIE_DOMAIN="example.com")
    client = app.test_client()
    client.set_cookie("consent", "no")  # the banner's decline, or a withdrawal
    for name, value in EVERY_COOKIE.items():
        client.set_cookie(name, value)
    page = client.get("/product")
    assert page.status_code == 200
    gone = expired(page)
    assert set(gone) == set(EVERY_COOKIE)
    for lines in gone.values():  # host-only and on the shared domain
        assert len(lines) == 2 and any("Domain=example.com" in line for line in lines)
    assert "rsa=" + VISITOR not in " ".join(set_cookies(page))  # nothing renewed
    if mode == "hybrid":
        refused = post_event(client, {"params": {"p1": "visit", "p2": "x"}, "url": "http://localhost/product"})
        assert refused.status_code == 403
    assert quiet(app, host) == []
    assert 'push("trackEvent"' not in page.get_data(as_text=True) or mode != "server"


def test_forget_visitor_expires_the_cookies_on_demand_and_nothing_more_is_sent(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")

    @app.get("/withdraw")
    def withdraw():
        response = make_response()
        cdp_of(app).forget_visitor(response)
        response.set_data(render_template_string(PRODUCT_PAGE, name="Cat tree", price="1"))
        return response

    client = consenting_client(app, **EVERY_COOKIE)
    answer = client.get("/withdraw")
    assert set(expired(answer)) == set(EVERY_COOKIE)
    assert quiet(app, host) == []  # the page's pageview and visit were not sent


@pytest.mark.parametrize("mode", ["server", "hybrid"])
def test_a_cookieless_visitor_is_tracked_with_no_cookie_and_no_id(make_site, host: FakeTrackingHost, mode: str) -> None:
    app = make_site(mode, CDP_TRACK_WITHOUT_CONSENT="cookieless")
    cdp_of(app).user_id_loader(lambda: "customer-9")  # even a logged-in user is not named
    client = app.test_client()
    page = client.get("/product")
    assert set_cookies(page) == []
    if mode == "hybrid":
        assert '"am","",document' in page.get_data(as_text=True) and ",true," in page.get_data(as_text=True)
        answer = post_event(client, {"params": {"p1": "visit", "p2": "cat-tree"}, "url": "http://localhost/product"})
        assert answer.status_code == 204 and set_cookies(answer) == []
    queries = quiet(app, host)
    assert queries, "a cookieless page view is tracked"
    for query in queries:
        assert "coid=" not in query and "sid=" not in query and "ruid=" not in query, query
        assert "url=http%3A%2F%2Flocalhost%2Fproduct" in query


def test_a_visitor_who_consents_gets_full_tracking_from_the_next_page(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server", CDP_TRACK_WITHOUT_CONSENT="cookieless")
    client = app.test_client()
    client.get("/product")
    client.set_cookie("consent", "1")
    page = client.get("/product")
    assert any(line.startswith("rsa=") for line in set_cookies(page))
    host.wait_for(lambda h: any("coid=" in hit.query for hit in h.hits))
    assert [hit for hit in quiet(app, host) if "coid=" in hit and "sid=" in hit]


def test_client_mode_cookieless_sets_raptors_own_switch_before_its_script(make_site, host: FakeTrackingHost) -> None:
    app = make_site("client", CDP_TRACK_WITHOUT_CONSENT="cookieless")
    page = app.test_client().get("/product")
    html = page.get_data(as_text=True)
    switch = html.index("window.raptor&&(window.raptor.noCookies=true);")
    loader = html.index("raptor-3.0.min.js")
    assert switch < loader and set_cookies(page) == []
    assert '.min.js",true);' in html  # loaded at once, not on enableTracking
    consented = consenting_client(app).get("/product").get_data(as_text=True)
    assert "noCookies" not in consented


def test_without_cookieless_a_visitor_without_consent_is_not_tracked(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    page = app.test_client().get("/product")
    assert set_cookies(page) == [] and quiet(app, host) == []
    assert "noCookies" not in make_site("client").test_client().get("/product").get_data(as_text=True)


def test_the_cookie_domain_is_set_on_every_cookie_written(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server", CDP_COOKIE_DOMAIN=".example.com")
    page = consenting_client(app).get("/product?reaid=R-2")
    lines = set_cookies(page)
    assert {line.split("=", 1)[0] for line in lines} == {"rsa", "rsaSession", "rsaReaId"}
    assert all("Domain=example.com" in line for line in lines), lines


def test_the_cookies_scripts_write_carry_the_cookie_domain_too(make_site, host: FakeTrackingHost) -> None:
    """The hybrid shim's rsa/rsaSession and the banner's consent cookie, written in the
    browser, carry CDP_COOKIE_DOMAIN as the server's Set-Cookie do."""
    app = make_site("hybrid", CDP_COOKIE_DOMAIN="example.com")

    @app.get("/banner")
    def banner():
        return render_template_string("{{ cdp_head_script() }}{{ cdp_consent_banner() }}")

    html = app.test_client().get("/banner").get_data(as_text=True)
    assert html.count('"; domain=example.com"') == 2  # the shim's keep() and the banner's choose()
    plain = make_site("hybrid").test_client()
    assert "domain=" not in plain.get("/product").get_data(as_text=True)


def test_rsa_rea_id_is_written_and_read_and_the_older_spelling_is_read_too(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    landing = consenting_client(app, rsa=VISITOR).get("/product?reaid=R-new")
    assert any(line.startswith("rsaReaId=R-new;") for line in set_cookies(landing))
    consenting_client(app, rsa=VISITOR, rsaReaId="R-new").get("/product")
    consenting_client(app, rsa=VISITOR, rsaReaid="R-old").get("/product")
    queries = quiet(app, host)
    assert sum("reaid=R-new" in query for query in queries) == 4  # two pages: pageview and visit each
    assert sum("reaid=R-old" in query for query in queries) == 2


def test_identify_email_makes_the_email_the_ruid_of_later_events(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")

    @app.get("/signed-up")
    def signed_up():
        assert cdp_of(app).identify_email(f"  {EMAIL} ")
        return "<p>thanks</p>"

    client = consenting_client(app, rsa=VISITOR, rsaSession=SESSION)
    answer = client.get("/signed-up")
    (cookie,) = [line for line in set_cookies(answer) if line.startswith("rsaRuid=")]
    assert cookie.startswith(f"rsaRuid={EMAIL_RUID};") and "Max-Age=31536000" in cookie and "HttpOnly" in cookie
    client.get("/product")
    queries = quiet(app, host)
    assert queries and all(f"ruid={quote(EMAIL_RUID, safe='')}" in query for query in queries)


def test_identify_email_needs_consent_and_an_address(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    with app.test_request_context("/"):
        assert cdp_of(app).identify_email(EMAIL) is False  # no consent: nothing kept
        with pytest.raises(ValidationError, match="email: expected an address"):
            cdp_of(app).identify_email("not an address")


def test_cdp_set_email_pushes_set_ruid_in_client_mode(make_site, host: FakeTrackingHost) -> None:
    app = make_site("client")

    @app.get("/welcome")
    def welcome():
        return render_template_string("{{ cdp_set_email(email) }}|{{ cdp_set_email('bad') }}", email=EMAIL)

    html = consenting_client(app).get("/welcome").get_data(as_text=True)
    assert f'window.raptor&&window.raptor.push("setRuid","{EMAIL_RUID}");' in html
    assert html.endswith("|")  # a malformed address renders nothing
    assert "setRuid" not in app.test_client().get("/welcome").get_data(as_text=True)  # nor without consent


def test_no_event_names_a_person_forgotten_within_the_hold(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    cdp = cdp_of(app)
    cdp.user_id_loader(lambda: "customer-9")
    with app.app_context():
        cdp.forget(user_id="customer-9", email=EMAIL)
        assert cdp.track_offline_buy("T-1", [{"id": "a", "price": 1, "quantity": 1}], EMAIL) == 0
        assert cdp.track("visit", visitor_id=VISITOR, user_id="customer-9", id="x")
    consenting_client(app, rsa=VISITOR, rsaRuid=EMAIL_RUID).get("/product")
    queries = quiet(app, host)
    assert len(queries) == 3  # the page's pageview and visit, and cdp.track's visit
    assert not [query for query in queries if "ruid=" in query]
    assert not [hit for hit in host.hits if hit.path.endswith(".stream")]
