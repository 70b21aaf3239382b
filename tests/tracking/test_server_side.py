"""Server-side and hybrid tracking (SPEC section 10), against a local fake tracking host
(a real HTTP server recording query strings), never a patched function."""

from __future__ import annotations

import base64
import json
import logging
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from flask import Flask, render_template_string, request

from cdp_bridge import CDP, ConfigurationError, TrackingArgumentError
from cdp_bridge.metrics import REGISTRY
from cdp_bridge.tracking.sender import EventSender, SenderCounts
from cdp_bridge.tracking.wire import Event, Visitor, encode_uri_component, ruid
from tests.support.fake_tracking_host import FakeTrackingHost
from tests.support.logs import missing_tool
from tests.support.loopback import bare_app
from tests.support.polling import wait_until
from tests.support.tracking_site import SESSION, VISIT, VISITOR, consenting_client, post_event
from tests.support.webhook import cdp_of

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
#: encodeURIComponent's output for each value (ECMAScript: everything but A-Z a-z 0-9 - _ . ! ~ * ' ( )
#: is percent-encoded as UTF-8); tests/tracking/test_browser.py checks the same table in Chromium.
ENCODINGS = [
    ("cat tree", "cat%20tree"), ("a+b", "a%2Bb"), ("a&b=c", "a%26b%3Dc"), ("#1", "%231"), ("50%", "50%25"),
    ("Zoë", "Zo%C3%AB"), ("🐱 cats", "%F0%9F%90%B1%20cats"), ("</script>", "%3C%2Fscript%3E"),
    ("!~*'()", "!~*'()"), ("-_.", "-_."), ("a/b?c:d@e", "a%2Fb%3Fc%3Ad%40e"), ("x;y,z", "x%3By%2Cz"),
    ('"quoted"', "%22quoted%22"), ("\u2028", "%E2%80%A8"), ("日本", "%E6%97%A5%E6%9C%AC"),
]


def sender_event(base_url: str, account: str, coid: str | None = None, **params: str) -> Event:
    """An event as a page queues it: ``{base_url}/{account}.rsa?p1=…[&coid=…]``."""
    return Event(base_url, account, params, Visitor(visitor_id=coid))


@pytest.mark.parametrize(("value", "encoded"), ENCODINGS)
def test_values_are_encoded_as_encode_uri_component_does(value: str, encoded: str) -> None:
    assert encode_uri_component(value) == encoded


def test_a_lone_surrogate_is_refused_rather_than_sent() -> None:
    with pytest.raises(TrackingArgumentError, match="lone surrogate"):
        encode_uri_component("a\ud800")


@pytest.mark.parametrize("user_id", ["42", "Zoë 🐱", "user+1@example.com", "a" * 255])
def test_ruid_is_the_base64_of_the_utf8_user_id(make_site, host: FakeTrackingHost, user_id: str) -> None:
    cdp = CDP()
    app = make_site(cdp=cdp)
    with app.app_context():
        assert cdp.track("visit", visitor_id=VISITOR, user_id=user_id, id="p1") is True
    host.wait_for(lambda h: len(h.hits) == 1)
    params = host.hits[0].params
    assert base64.b64decode(params["ruid"]).decode("utf-8") == user_id
    assert params["p7"] == user_id and ruid(user_id) in host.hits[0].query.replace("%2B", "+").replace(
        "%2F", "/").replace("%3D", "=")


def test_a_server_mode_page_renders_no_script_and_the_server_sends_its_events(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    queued_before = tracking_events("queued")
    page = consenting_client(app, rsa=VISITOR, rsaSession=SESSION).get("/product").get_data(as_text=True)
    assert "<script" not in page and "raptor" not in page
    assert tracking_events("queued") - queued_before == 2
    host.wait_for(lambda h: len(h.hits) == 2)
    pageview, visit = host.hits
    assert pageview.path == visit.path == "/123456.rsa"
    assert pageview.query == f"p1=pageview&coid={VISITOR}&sid={SESSION}&url=http%3A%2F%2Flocalhost%2Fproduct"
    assert visit.query == (f"p1=visit&p2=cat-tree&p3=Cat%20tree%20%22Sky%22%20%26%20co&p4=pets%23Pets%3Bcats%23Cats"
                           f"&p6=EUR&p12=89.90&coid={VISITOR}&sid={SESSION}&url=http%3A%2F%2Flocalhost%2Fproduct")


@pytest.mark.parametrize("path", ["/product?colour=gr%C3%BCn&q=a+b%26c", "/product?x=%FF%FE", "/product?"])
def test_the_url_sent_is_the_pages_as_werkzeug_reads_it(make_site, host: FakeTrackingHost, path: str) -> None:
    """The sender joins the page's URL from its parts, off the request path: the same URL
    ``request.url`` gives, under a script root too (a site mounted at ``/shop``)."""
    app = make_site("server", CDP_TRACKING_CONCURRENCY=1)
    seen: list[str] = []
    app.before_request(lambda: seen.append(request.url) and None)
    client = consenting_client(app, rsa=VISITOR, rsaSession=SESSION)
    assert client.get(path, environ_overrides={"SCRIPT_NAME": "/shop"}).status_code == 200
    host.wait_for(lambda h: len(h.hits) >= 2)
    assert seen[0].startswith("http://localhost/shop/product")
    assert {hit.params["url"] for hit in host.hits} == {seen[0]}


def test_empty_values_are_left_out_except_the_basket(make_site, host: FakeTrackingHost) -> None:
    cdp = CDP()
    app = make_site(cdp=cdp)
    with app.app_context():
        cdp.track("basket", visitor_id=VISITOR, id="cat-food", basket_content=[], basket_id="")
        cdp.track("visit", visitor_id=VISITOR, id="cat-food", name="", brand="")
    host.wait_for(lambda h: len(h.hits) == 2)
    assert host.hits[0].query == f"p1=basket&p2=cat-food&p10=&coid={VISITOR}"
    assert host.hits[1].query == f"p1=visit&p2=cat-food&coid={VISITOR}"


def test_the_tracking_parameters_setting_moves_fields_in_server_mode_too(make_site, host: FakeTrackingHost) -> None:
    cdp = CDP()
    app = make_site(cdp=cdp, CDP_TRACKING_PARAMETERS={"basket": {"basket_content": "p30"}, "visit": {"brand": "p40"}})
    with app.app_context():
        cdp.track("basket", visitor_id=VISITOR, id="x", basket_content=[])
        cdp.track("visit", visitor_id=VISITOR, id="x", brand="Purrfect")
    host.wait_for(lambda h: len(h.hits) == 2)
    assert host.hits[0].query == f"p1=basket&p2=x&p30=&coid={VISITOR}"
    assert host.hits[1].query == f"p1=visit&p2=x&p40=Purrfect&coid={VISITOR}"


def test_without_consent_no_event_and_no_cookie(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    client = app.test_client()
    response = client.get("/product")
    assert response.headers.getlist("Set-Cookie") == []
    client.set_cookie("consent", "no")
    assert client.get("/product").headers.getlist("Set-Cookie") == []
    assert host.hits == []


def cookies_of(response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.getlist("Set-Cookie")}


def test_server_mode_sets_both_cookies_http_only_after_consent_and_renews_them(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server", CDP_VISITOR_COOKIE_DAYS=30)
    client = consenting_client(app)
    first = cookies_of(client.get("/product"))
    rsa = re.search(r"rsa=([^;]+)", first["rsa"]).group(1)
    assert UUID.fullmatch(rsa)
    assert "Max-Age=2592000" in first["rsa"] and "Path=/" in first["rsa"] and "SameSite=Lax" in first["rsa"]
    assert "HttpOnly" in first["rsa"] and "Secure" not in first["rsa"]
    session = re.search(r"rsaSession=([^;]+)", first["rsaSession"]).group(1)
    assert UUID.fullmatch(session) and "Max-Age=1200" in first["rsaSession"] and "HttpOnly" in first["rsaSession"]
    again = cookies_of(client.get("/product"))  # the test client sends the cookies back
    assert f"rsa={rsa};" in again["rsa"] and f"rsaSession={session};" in again["rsaSession"]  # renewed, same values
    host.wait_for(lambda h: len(h.hits) == 4)
    assert {hit.params["coid"] for hit in host.hits} == {rsa} and {hit.params["sid"] for hit in host.hits} == {session}


def test_an_invalid_cookie_is_replaced_and_https_makes_them_secure(make_site, host: FakeTrackingHost) -> None:
    client = make_site("server").test_client()
    client.set_cookie("consent", "1", domain="shop.example")
    client.set_cookie("rsa", "not-a-uuid", domain="shop.example")
    set_cookies = cookies_of(client.get("/product", base_url="https://shop.example"))
    assert "rsa=not-a-uuid" not in set_cookies["rsa"] and "Secure" in set_cookies["rsa"]
    assert "Secure" in set_cookies["rsaSession"]


@pytest.mark.parametrize(("mode", "names", "http_only"), [("client", {"rsa"}, False), ("hybrid", {"rsa", "rsaSession"}, False)])
def test_client_and_hybrid_modes_leave_the_cookies_readable(make_site, mode: str, names: set, http_only: bool) -> None:
    app = make_site(mode)
    set_cookies = cookies_of(consenting_client(app).get("/product"))
    assert set(set_cookies) == names
    assert all(("HttpOnly" in header) is http_only for header in set_cookies.values())


def test_client_mode_pages_are_unchanged(make_site, host: FakeTrackingHost) -> None:
    page = consenting_client(make_site("client")).get("/product").get_data(as_text=True)
    assert 'window.raptor.push("trackEvent",{"p1":"visit"' in page and "raptor-3.0.min.js" in page
    assert host.hits == []


def test_cdp_track_inside_a_request_takes_the_visitor_from_its_cookies(make_site, host: FakeTrackingHost) -> None:
    cdp = CDP()
    cdp.user_id_loader(lambda: "7")
    app = make_site("client", cdp=cdp)  # cdp.track sends server-side in any mode

    @app.post("/paid")
    def paid() -> str:
        return "queued" if cdp.track("buy", id="cat-tree", price=89.9, quantity=1, currency="EUR", order_id="o-1") else "no"

    assert consenting_client(app, rsa=VISITOR, rsaSession=SESSION).post("/paid").get_data(as_text=True) == "queued"
    host.wait_for(lambda h: len(h.hits) == 1)
    params = host.hits[0].params
    assert params["p1"] == "buy" and params["p5"] == "89.90" and params["p21"] == "o-1" and params["p7"] == "7"
    assert params["coid"] == VISITOR and params["sid"] == SESSION and base64.b64decode(params["ruid"]) == b"7"
    assert params["url"] == "http://localhost/paid"
    assert app.test_client().post("/paid").get_data(as_text=True) == "no"  # no consent: nothing sent
    assert len(host.hits) == 1


def test_cdp_track_outside_a_request_takes_the_ids_it_is_given(make_site, host: FakeTrackingHost) -> None:
    cdp = CDP()
    app = make_site("server", cdp=cdp)
    with app.app_context():
        assert cdp.track("buy", visitor_id=VISITOR.upper(), session_id=SESSION, user_id=42, url="https://shop.example/order/1",
                         id="cat-food", price="14.5", quantity=2, currency="EUR") is True
        with pytest.raises(TrackingArgumentError, match="visitor_id and session_id must be UUIDs"):
            cdp.track("buy", visitor_id="nope", id="x", price=1, quantity=1)
        with pytest.raises(TrackingArgumentError, match="event_type 'sale' is not a known event type"):
            cdp.track("sale", visitor_id=VISITOR)
    host.wait_for(lambda h: len(h.hits) == 1)
    assert host.hits[0].query == (f"p1=buy&p2=cat-food&p5=29.00&p6=EUR&p7=42&p12=14.50&p13=2&coid={VISITOR}&sid={SESSION}"
                                  "&ruid=NDI%3D&url=https%3A%2F%2Fshop.example%2Forder%2F1")


def test_cdp_track_needs_an_account_number(tmp_path: Path) -> None:
    app = bare_app(tmp_path)
    with app.app_context(), pytest.raises(ConfigurationError, match="CDP_ACCOUNT_NUMBER is not set"):
        cdp_of(app).track("visit", visitor_id=VISITOR, id="x")


def test_a_failing_helper_sends_none_of_its_events(make_site, host: FakeTrackingHost) -> None:
    app = make_site("server")
    app.jinja_env.globals["lines"] = [{"id": "a", "price": 1, "quantity": 1}, {"id": "b", "price": "lots", "quantity": 1}]

    @app.get("/order")
    def order() -> str:
        return render_template_string("{{ cdp_track_buy(lines, order_id='o1', currency='EUR') }}|{{ cdp_track_visit('ok') }}")

    assert consenting_client(app, rsa=VISITOR).get("/order").get_data(as_text=True) == "|"
    host.wait_for(lambda h: len(h.hits) == 1)
    assert host.hits[0].params["p1"] == "visit"  # not the first buy line of the broken order


def test_a_value_no_url_can_carry_stops_all_of_its_helpers_events(make_site, host: FakeTrackingHost) -> None:
    """The second line's name holds a lone surrogate: it is refused when the page queues
    its events, so the first line is not sent either."""
    app = make_site("server")
    app.jinja_env.globals["lines"] = [{"id": "a", "price": 1, "quantity": 1},
                                      {"id": "b", "price": 1, "quantity": 1, "name": "bad\ud800"}]

    @app.get("/order")
    def order() -> str:
        return render_template_string("{{ cdp_track_buy(lines, order_id='o1', currency='EUR') }}|{{ cdp_track_visit('ok') }}")

    assert consenting_client(app, rsa=VISITOR).get("/order").get_data(as_text=True) == "|"
    host.wait_for(lambda h: len(h.hits) == 1)
    app.extensions["cdp"].tracking.sender.stop()
    assert [hit.params["p1"] for hit in host.hits] == ["visit"]


def test_a_hanging_or_stopped_host_never_holds_a_page(make_site, host: FakeTrackingHost) -> None:
    """Pages finish while the host holds every request it gets: sending is off the request path."""
    app = make_site("server")
    host.hold()
    done: list[int] = []

    def browse() -> None:
        client = consenting_client(app, rsa=VISITOR)
        done.extend(client.get("/product").status_code for _ in range(20))

    browser = threading.Thread(target=browse)
    browser.start()
    browser.join(20)
    assert done == [200] * 20  # every transfer is stuck (and retried after its timeout); pages are not
    host.release()
    host.wait_for(lambda h: len(h.hits) >= 40)

    stopped = make_site("server", CDP_SERVER_TRACKING_URL="http://127.0.0.1:9")  # nothing listens there
    statuses = [consenting_client(stopped, rsa=VISITOR).get("/product").status_code for _ in range(20)]
    assert statuses == [200] * 20
    stopped.extensions["cdp"].tracking.sender.stop(seconds=10)  # its failures are not the next test's


def tracking_events(outcome: str) -> float:
    """``cdp_tracking_events_total{outcome=…}`` of this process."""
    return REGISTRY.get_sample_value("cdp_tracking_events_total", {"outcome": outcome}) or 0.0


def test_the_queue_drops_the_oldest_and_counts_them(host: FakeTrackingHost) -> None:
    dropped_before, sent_before = tracking_events("dropped"), tracking_events("sent")
    sender = EventSender(queue_size=5, retries=0, concurrency=1)
    host.hold()
    sender.enqueue(sender_event(host.url, "1", p1="first"))
    host.wait_for(lambda h: len(h.hits) == 1)  # the sender waits on it
    for number in range(10):
        sender.enqueue(sender_event(host.url, "1", p1=f"e{number}"))
    assert sender.counts().dropped == 5 and sender.counts().queued == 5
    host.release()
    host.wait_for(lambda h: len(h.hits) == 6)
    assert [hit.query for hit in host.hits] == ["p1=first", "p1=e5", "p1=e6", "p1=e7", "p1=e8", "p1=e9"]
    sender.stop()
    assert sender.counts().sent == 6
    assert (tracking_events("dropped") - dropped_before, tracking_events("sent") - sent_before) == (5, 6)


def test_connection_errors_and_5xx_are_retried_other_4xx_are_not(host: FakeTrackingHost) -> None:
    failed_before = tracking_events("failed")
    sender = EventSender(backoff=0.01, concurrency=1)  # one transfer: the host's script of answers in order
    host.statuses = [503, 502, 200, 404]
    sender.enqueue(sender_event(host.url, "1", p1="retried"))
    sender.enqueue(sender_event(host.url, "1", p1="refused"))
    host.wait_for(lambda h: len(h.hits) == 4)
    sender.stop()
    assert [hit.query for hit in host.hits] == ["p1=retried"] * 3 + ["p1=refused"]
    counts = sender.counts()
    assert (counts.sent, counts.failed, counts.dropped) == (1, 1, 0)
    assert tracking_events("failed") - failed_before == 1


def test_a_drip_fed_answer_costs_the_sender_its_timeout_not_more() -> None:
    """A host that sends its answer a byte every 0.1 s: each try ends at the 1 s timeout
    (a total, not a per-read timeout), and the event counts as failed."""
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    tries: list[float] = []

    def drip_answers() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            tries.append(time.monotonic())
            threading.Thread(target=drip, args=(connection,), daemon=True).start()

    def drip(connection: socket.socket) -> None:
        try:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100:
                connection.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass
        finally:
            connection.close()

    threading.Thread(target=drip_answers, daemon=True).start()
    sender = EventSender(timeout=1.0, retries=1, backoff=0.01)
    started = time.monotonic()
    sender.enqueue(sender_event(f"http://127.0.0.1:{listener.getsockname()[1]}", "1", p1="slow"))
    wait_until(lambda: sender.counts().failed, "the drip-fed answer held the sender")
    elapsed = time.monotonic() - started
    sender.stop()
    listener.close()
    assert len(tries) == 2 and elapsed < 3.5, (len(tries), elapsed)  # two tries of 1 s each, not 15 s each


def test_the_hosts_retry_after_is_honoured(host: FakeTrackingHost) -> None:
    """503 and 429 with Retry-After: retried after the seconds the host asks for, not the
    sender's own short backoff (what urllib3's Retry does with a header it can read)."""
    sender = EventSender(backoff=0.01)
    host.statuses = [503, 429, 200]
    host.headers = {503: {"Retry-After": "1"}, 429: {"Retry-After": "1"}}
    sender.enqueue(sender_event(host.url, "1", p1="patient"))
    host.wait_for(lambda h: len(h.hits) == 3, seconds=15)
    sender.stop(seconds=10)
    assert sender.counts().sent == 1
    gaps = [later.at - earlier.at for earlier, later in zip(host.hits, host.hits[1:])]
    assert all(gap >= 0.9 for gap in gaps), gaps


@pytest.fixture(scope="module")
def loopback_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, made by openssl for this run."""
    openssl = shutil.which("openssl")
    if openssl is None:
        missing_tool("openssl not found: apt-get install openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_events_go_over_https_checked_against_the_trusted_certificates(loopback_certificate) -> None:
    """Raptor's host is HTTPS: the sender checks its certificate (certifi's authorities by
    default), so a host it cannot trust gets nothing, and one it can gets the event."""
    host = FakeTrackingHost(tls=loopback_certificate)
    try:
        assert host.url.startswith("https://")
        default = EventSender(retries=0)  # certifi's authorities: not the test's own
        default.enqueue(sender_event(host.url, "1", coid=VISITOR, p1="visit"))
        default.stop(seconds=10)
        assert (default.counts().sent, default.counts().failed, host.hits) == (0, 1, [])
        trusting = EventSender(ca_file=loopback_certificate[0])
        trusting.enqueue(sender_event(host.url, "1", coid=VISITOR, p1="visit"))
        trusting.stop(seconds=10)
        assert trusting.counts().sent == 1
        assert [hit.query for hit in host.hits] == [f"p1=visit&coid={VISITOR}"]
    finally:
        host.close()


def test_a_failure_is_logged_once_without_the_events_query(caplog) -> None:
    sender = EventSender(retries=1, backoff=0.01)
    with caplog.at_level(logging.INFO, logger="cdp_bridge.tracking"):
        for _ in range(3):
            sender.enqueue(sender_event("http://127.0.0.1:9", "123456", coid=VISITOR, p1="visit"))  # nothing listens there
        sender.stop(seconds=10)
    assert sender.counts().failed == 3
    warnings = [record.getMessage() for record in caplog.records if "not accepted" in record.getMessage()]
    assert len(warnings) == 1 and "connection: could not connect" in warnings[0], warnings
    assert VISITOR not in caplog.text and "p1=visit" not in caplog.text


def test_events_are_sent_several_at_once_while_a_backlog_lasts(host: FakeTrackingHost) -> None:
    """Raptor takes one event a request: a sender keeps up with a slow host by having up
    to ``concurrency`` transfers in flight, and no more, once a backlog builds."""
    sender = EventSender(concurrency=4, timeout=20)  # no try times out while the host holds them
    host.hold()
    for number in range(40):
        sender.enqueue(sender_event(host.url, "1", p1=f"e{number}"))
    host.wait_for(lambda h: len(h.hits) == 4)
    time.sleep(0.2)
    assert len(host.hits) == 4 and sender.counts().queued == 36
    host.release()
    host.wait_for(lambda h: len(h.hits) == 40)
    sender.stop()
    assert sender.counts() == SenderCounts(sent=40, failed=0, dropped=0, queued=0)
    assert sorted(hit.query for hit in host.hits) == sorted(f"p1=e{number}" for number in range(40))


def test_without_a_backlog_one_transfer_sends(host: FakeTrackingHost) -> None:
    """A few events wait for the first thread: the others join only for a backlog (more
    than HELP_BACKLOG), so a process that keeps up runs one sending thread."""
    from cdp_bridge.tracking.sender import HELP_BACKLOG

    sender = EventSender(concurrency=4, timeout=20)
    host.hold()
    for number in range(HELP_BACKLOG):
        sender.enqueue(sender_event(host.url, "1", p1=f"e{number}"))
    host.wait_for(lambda h: len(h.hits) == 1)
    time.sleep(0.3)
    assert len(host.hits) == 1
    host.release()
    host.wait_for(lambda h: len(h.hits) == HELP_BACKLOG)
    sender.stop()
    assert [hit.query for hit in host.hits] == [f"p1=e{number}" for number in range(HELP_BACKLOG)]  # in order


def test_buys_are_never_dropped_to_make_room_for_other_events(host: FakeTrackingHost) -> None:
    """Buys have a lane of their own, sent first: a flood of other events drops the
    oldest of those, never a buy."""
    dropped_before = tracking_events("dropped")
    sender = EventSender(queue_size=3, retries=0, concurrency=1)
    host.hold()
    sender.enqueue(sender_event(host.url, "1", p1="first"))
    host.wait_for(lambda h: len(h.hits) == 1)  # the one transfer waits on it
    sender.enqueue(sender_event(host.url, "1", p1="buy", p21="o1"), buy=True)
    for number in range(10):
        sender.enqueue(sender_event(host.url, "1", p1=f"view{number}"))
    sender.enqueue(sender_event(host.url, "1", p1="buy", p21="o2"), buy=True)
    assert sender.counts().dropped == 7 and sender.counts().queued == 5
    host.release()
    host.wait_for(lambda h: len(h.hits) == 6)
    sender.stop()
    assert [hit.query for hit in host.hits] == ["p1=first", "p1=buy&p21=o1", "p1=buy&p21=o2",
                                                "p1=view7", "p1=view8", "p1=view9"]
    assert tracking_events("dropped") - dropped_before == 7


def test_a_pages_buy_goes_ahead_of_the_queued_views(make_site, host: FakeTrackingHost) -> None:
    """Through the app: ``buy`` events take the buys' lane, whoever queues them."""
    cdp = CDP()
    app = make_site("server", cdp=cdp, CDP_TRACKING_CONCURRENCY="1")
    host.hold()
    with app.app_context():
        cdp.track("visit", visitor_id=VISITOR, id="held")
        host.wait_for(lambda h: len(h.hits) == 1)
        for number in range(3):
            cdp.track("visit", visitor_id=VISITOR, id=f"v{number}")
        cdp.track("buy", visitor_id=VISITOR, id="cat-tree", price="10", quantity=1, currency="EUR", order_id="o1")
    host.release()
    host.wait_for(lambda h: len(h.hits) == 5)
    assert [(hit.params["p1"], hit.params["p2"]) for hit in host.hits] == [
        ("visit", "held"), ("buy", "cat-tree"), ("visit", "v0"), ("visit", "v1"), ("visit", "v2")]


def test_stopping_drains_the_queue(host: FakeTrackingHost) -> None:
    sender = EventSender(timeout=10)  # a loaded machine's slow answer is not retried (a retry sends twice)
    for number in range(50):
        sender.enqueue(sender_event(host.url, "1", p1=f"e{number}"))
    sender.stop(seconds=20)
    assert sender.counts().sent == 50
    assert sorted(hit.query for hit in host.hits) == sorted(f"p1=e{number}" for number in range(50))


def test_a_stopped_sender_starts_again_with_the_next_event(host: FakeTrackingHost) -> None:
    """Its threads are counted as they end, so the next event starts them all again."""
    sender = EventSender(concurrency=2, timeout=10)
    sender.enqueue(sender_event(host.url, "1", p1="before"))
    sender.stop(seconds=10)
    assert sender._running == 0
    sender.enqueue(sender_event(host.url, "1", p1="after"))
    host.wait_for(lambda h: len(h.hits) == 2)
    assert sender._running == 2
    sender.stop(seconds=10)
    assert [hit.query for hit in host.hits] == ["p1=before", "p1=after"] and sender.counts().sent == 2


def test_check_reports_what_the_senders_did(make_site, host: FakeTrackingHost) -> None:
    cdp = CDP()
    app = make_site("server", cdp=cdp)
    runner = app.test_cli_runner()
    assert "no process has reported sending events in the last hour" in runner.invoke(args=["cdp", "check"]).output
    with app.app_context():
        cdp.track("visit", visitor_id=VISITOR, id="x")
    host.wait_for(lambda h: len(h.hits) == 1)
    app.extensions["cdp"].tracking.sender.stop()  # reports its counts as it stops (and every minute)
    output = runner.invoke(args=["cdp", "check"]).output
    assert "ok    tracking mode server: 1 process reported in the last hour: sent 1, failed 0, dropped 0" in output


# -- hybrid: POST /cdp/track -------------------------------------------------------------------


def test_hybrid_forwards_an_event_with_the_visitors_ids(make_site, host: FakeTrackingHost) -> None:
    cdp = CDP()
    cdp.user_id_loader(lambda: "Zoë")
    app = make_site("hybrid", cdp=cdp)
    client = consenting_client(app, rsa=VISITOR, rsaSession=SESSION)
    page = client.get("/product").get_data(as_text=True)
    assert 'fetch(u,{method:"POST"' in page and '"/cdp/track",true' in page  # the shim, consent given
    assert "raptor-3.0.min.js" not in page and "setRuid" not in page
    response = post_event(client, VISIT)
    assert response.status_code == 204
    host.wait_for(lambda h: len(h.hits) == 1)
    assert host.hits[0].query == (f"p1=visit&p2=cat-tree&p3=Cat%20tree&coid={VISITOR}&sid={SESSION}"
                                  f"&ruid={encode_uri_component(ruid('Zoë'))}&url=http%3A%2F%2Flocalhost%2Fproduct")
    assert "rsaSession" in cookies_of(response)  # an event renews the session


@pytest.mark.parametrize(("headers", "body", "status", "error"), [
    ({"Sec-Fetch-Site": "cross-site"}, VISIT, 403, "cross_origin"),
    ({"Sec-Fetch-Site": "same-site"}, VISIT, 403, "cross_origin"),
    ({"Sec-Fetch-Site": None, "Origin": "https://evil.example"}, VISIT, 403, "cross_origin"),
    ({"Sec-Fetch-Site": None}, VISIT, 403, "cross_origin"),
    ({}, {"params": {"p1": "visit", "p2": "x" * 9000}}, 413, "payload_too_large"),
    ({}, {"params": {"p1": "visit", "p9": "raw"}}, 400, "invalid_event"),
    ({}, {"params": {"p1": "visit", "evil": "1"}}, 400, "invalid_event"),
    ({}, {"params": {"p1": "hack"}}, 400, "invalid_event"),
    ({}, {"params": {"p1": "visit", "p2": 5}}, 400, "invalid_event"),
    ({}, {"params": {"p1": "visit", "p2": "a\u0000b"}}, 400, "invalid_event"),
    ({}, {"params": {"p1": "visit", "p2": "\ud800"}}, 400, "invalid_event"),
    ({}, ["not", "an", "object"], 400, "invalid_event"),
    ({}, {"params": {}}, 400, "invalid_event"),
], ids=["cross-site", "same-site", "other origin", "no origin", "oversize", "raw parameter", "unknown key",
        "unknown type", "number", "control character", "lone surrogate", "list", "empty"])
def test_hybrid_refuses_what_is_not_a_same_origin_event(make_site, host: FakeTrackingHost, headers, body, status, error) -> None:
    client = consenting_client(make_site("hybrid"), rsa=VISITOR)
    sent_headers = {"Sec-Fetch-Site": "same-origin", **headers}
    sent_headers = {name: value for name, value in sent_headers.items() if value is not None}
    response = client.post("/cdp/track", json=body, headers=sent_headers)
    assert response.status_code == status and response.get_json()["error"] == error, response.get_data(as_text=True)
    assert host.hits == []


def test_hybrid_accepts_a_same_origin_origin_header_without_fetch_metadata(make_site, host: FakeTrackingHost) -> None:
    client = consenting_client(make_site("hybrid"), rsa=VISITOR)
    assert client.post("/cdp/track", json=VISIT, headers={"Origin": "http://localhost"}).status_code == 204


def test_hybrid_refuses_bad_bodies_without_consent_and_beyond_the_rate(make_site, host: FakeTrackingHost) -> None:
    # One transfer: with several, the in-process fake host (sharing this process's interpreter
    # lock) may answer after the 1 s timeout on a loaded machine, and the retry sends twice.
    app = make_site("hybrid", CDP_TRACKING_CONCURRENCY="1")
    client = consenting_client(app, rsa=VISITOR)
    assert client.post("/cdp/track", data="{", content_type="application/json",
                       headers={"Sec-Fetch-Site": "same-origin"}).status_code == 400
    assert client.post("/cdp/track", data="p1=visit", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 415
    assert post_event(app.test_client(), VISIT).get_json()["error"] == "no_consent"
    another = consenting_client(app, rsa=SESSION)  # another visitor: a rate of its own
    statuses = [post_event(another, VISIT).status_code for _ in range(125)]
    assert statuses.count(204) == 120 and statuses[-1] == 429
    host.wait_for(lambda h: len(h.hits) == 120)


@pytest.mark.parametrize("rsa", [None, "not-a-uuid", "00000000-0000-0000-0000-000000000000",
                                 "0b6f7c2e-5a3d-1e1f-9c8b-7a6d5e4f3a2b"], ids=["none", "garbage", "all-zero", "version-1"])
def test_hybrid_refuses_an_event_without_a_visitor_cookie(make_site, host: FakeTrackingHost, rsa: str | None) -> None:
    """Without an rsa cookie each post was given a fresh id and a fresh rate: refused now."""
    client = consenting_client(make_site("hybrid"), **({"rsa": rsa} if rsa else {}))
    response = post_event(client, VISIT)
    assert response.status_code == 403 and response.get_json()["error"] == "no_visitor"
    assert host.hits == []


def test_rotating_cookies_from_one_address_get_no_more_than_the_address_limit(make_site, host: FakeTrackingHost) -> None:
    """1,000 events from one client address, each with a new visitor id: at most
    CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE (600 by default) are forwarded, the rest get 429."""
    import uuid

    app = make_site("hybrid")
    statuses = []
    for _ in range(1000):
        statuses.append(post_event(consenting_client(app, rsa=str(uuid.uuid4())), VISIT).status_code)
    assert statuses.count(204) == 600 and statuses.count(429) == 400 and statuses[-1] == 429
    app.extensions["cdp"].tracking.sender.stop(seconds=10)  # sends all that was queued
    # The refused events were never queued: 600 visitors reached the host (a try that timed
    # out under load may have been sent twice, so visitors are counted, not requests).
    assert len({hit.params["coid"] for hit in host.hits}) == 600
    other_address = consenting_client(app, rsa=VISITOR).post("/cdp/track", json=VISIT, environ_base={"REMOTE_ADDR": "10.0.0.9"},
                                                             headers={"Sec-Fetch-Site": "same-origin"})
    assert other_address.status_code == 204  # the limit is per address


def test_the_address_limit_is_a_setting(make_site, host: FakeTrackingHost) -> None:
    app = make_site("hybrid", CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=3)
    statuses = [post_event(consenting_client(app, rsa=VISITOR if n % 2 else SESSION), VISIT).status_code for n in range(5)]
    assert statuses == [204, 204, 204, 429, 429]
    assert post_event(consenting_client(app, rsa=VISITOR), VISIT).get_json()["message"] == \
        "at most 3 events a minute per client address"


@pytest.mark.parametrize("body", [
    b'{"params": ' + b"[" * 4000 + b"]" * 4000 + b"}",
    b'{"params": {"p1": "visit", "p2": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
    b"[" * 8000,
], ids=["deep params", "deep value", "unclosed"])
def test_hybrid_answers_400_to_deeply_nested_json(make_site, host: FakeTrackingHost, body: bytes) -> None:
    """Under 8 KiB, 4,000 levels of nesting raised RecursionError: a 500."""
    client = consenting_client(make_site("hybrid"), rsa=VISITOR)
    response = client.post("/cdp/track", data=body, content_type="application/json", headers={"Sec-Fetch-Site": "same-origin"})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_event", response.get_data(as_text=True)
    assert host.hits == []


def test_the_track_endpoint_serves_hybrid_mode_only(make_site) -> None:
    for mode in ("client", "server"):
        assert post_event(consenting_client(make_site(mode), rsa=VISITOR), VISIT).status_code == 404


def test_the_track_endpoint_passes_a_hosts_csrf_protection(make_site, host: FakeTrackingHost) -> None:
    from flask_wtf import CSRFProtect

    app = make_site("hybrid")
    CSRFProtect(app)
    assert post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code == 204


def test_bad_tracking_settings_are_refused(tmp_path: Path) -> None:
    for config, message in [({"CDP_TRACKING_MODE": "browser"}, "CDP_TRACKING_MODE: expected one of client, server, hybrid"),
                            ({"CDP_VISITOR_COOKIE_DAYS": "0"}, "CDP_VISITOR_COOKIE_DAYS: expected a whole number of days"),
                            ({"CDP_VISITOR_COOKIE_DAYS": "999"}, "CDP_VISITOR_COOKIE_DAYS: expected a whole number of days"),
                            ({"CDP_SERVER_TRACKING_URL": "t.raptor"}, "CDP_SERVER_TRACKING_URL: expected an http(s) URL")]:
        app = Flask("bad", instance_path=str(tmp_path / "i"))
        app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/b.sqlite3", **config)
        with pytest.raises(ConfigurationError, match=re.escape(message)):
            CDP(app)


SERVED_SITE = '''from flask import Flask, render_template_string, request
from cdp_bridge import CDP
app = Flask("served_tracking_site")
app.config.update({config!r})
cdp = CDP(app)
with app.app_context():
    cdp.create_tables()
    app.extensions["cdp"].tracking.sender.counts()  # made before the fork, as a preloaded app does

@app.get("/product/<name>")
def product(name):
    return render_template_string("{{{{ cdp_track_visit(name) }}}}", name=name)
'''


@pytest.mark.slow
def test_under_gunicorn_each_worker_sends_with_a_sender_of_its_own(host: FakeTrackingHost, tmp_path: Path) -> None:
    """Two gunicorn workers forked from a master that loaded the app (--preload): each
    worker sends with its own sender thread, and what is queued when gunicorn stops is
    still sent as each worker exits."""
    import subprocess
    import sys

    import requests

    from tests.support.logs import remember_output
    from tests.support.postgres_server import free_port
    from tests.support.processes import REPO, process_env, wait_until_serving

    config = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/served.sqlite3", "CDP_ACCOUNT_NUMBER": "123456",
              "CDP_CONSENT_COOKIE": "consent", "CDP_TRACKING_MODE": "server", "CDP_SERVER_TRACKING_URL": host.url,
              "CDP_INLINE_WORKER": False, "CDP_TRACKING_CONCURRENCY": 1}  # exact counts: no retried duplicate
    (tmp_path / "served_tracking.py").write_text(SERVED_SITE.format(config=config))
    port = free_port()
    env = process_env(tmp_path, GUNICORN_APP="served_tracking:app", GUNICORN_BIND=f"127.0.0.1:{port}",
                      GUNICORN_WORKERS="2", GUNICORN_THREADS="4")
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--preload", "-c", str(REPO / "gunicorn.conf.py")],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base + "/product/warm-up", server)
        for number in range(40):  # a connection each, so both workers serve some
            response = requests.get(f"{base}/product/p{number}", headers={"Cookie": f"consent=1; rsa={VISITOR}"},
                                    timeout=10)
            assert response.status_code == 200
        host.wait_for(lambda h: len(h.hits) == 40, seconds=30)
        assert {hit.params["p2"] for hit in host.hits} == {f"p{n}" for n in range(40)}
        host.hold()  # events now wait in the workers' queues...
        with requests.Session() as session:
            for number in range(10):
                session.get(f"{base}/product/late{number}", headers={"Cookie": f"consent=1; rsa={VISITOR}"}, timeout=10)
    finally:
        server.terminate()  # ...and gunicorn stops: each worker drains its queue as it exits
        host.release()
        server.wait(60)
        log.close()
        remember_output((tmp_path / "gunicorn.log").read_text())
    sent = {hit.params["p2"] for hit in host.hits}
    assert {f"late{n}" for n in range(10)} <= sent
    gunicorn_log = (tmp_path / "gunicorn.log").read_text()
    workers = set(re.findall(r"Booting worker with pid: (\d+)", gunicorn_log))
    reports = re.findall(r"\[(\d+)\] \[INFO\] cdp_bridge\.tracking: server-side tracking: sent=(\d+)", gunicorn_log)
    assert len(workers) == 2 and reports and {pid for pid, _ in reports} <= workers  # workers send, not the master
    last = {pid: int(count) for pid, count in reports}  # each worker's last line counts all it sent
    assert sum(last.values()) == 50
    import sqlite3

    with sqlite3.connect(tmp_path / "served.sqlite3") as conn:  # what flask cdp check sums: a row per worker
        rows = conn.execute("SELECT sender, sent FROM cdp_tracking_senders").fetchall()
    assert len(rows) == len(last) and sum(sent for _, sent in rows) == 50


def test_a_consent_loader_answering_nonsense_never_breaks_a_page_without_helpers(make_site, caplog) -> None:
    cdp = CDP()
    cdp.consent_loader(lambda: "maybe")
    app = make_site("server", cdp=cdp)

    @app.get("/plain")
    def plain() -> str:
        return "<p>no tracking here</p>"

    response = app.test_client().get("/plain")
    assert response.status_code == 200 and response.headers.getlist("Set-Cookie") == []
    assert "@cdp.consent_loader must return true or false, not 'maybe'" in caplog.text


@pytest.mark.slow
def test_no_body_or_header_makes_the_track_endpoint_fail(make_site, host: FakeTrackingHost) -> None:
    """1,000 generated requests to POST /cdp/track, deep, with lone surrogates and numbers
    at the edge among them: every answer is one of its statuses."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    app = make_site("hybrid")
    texts = st.one_of(st.text(max_size=30), st.text(max_size=5).map(lambda t: t + "\ud800"))
    edge_numbers = st.sampled_from([10**400, -(10**400), 1e308, -0.0, 5e-324, 2**63, -(2**63) - 1])
    values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), edge_numbers, texts),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=8)
    params = st.dictionaries(st.one_of(st.sampled_from(["p1", "p2", "p3", "p4", "p10", "p99", "p100"]), texts),
                             st.one_of(st.sampled_from(["visit", "buy", "basket", ""]), values), max_size=5)
    bodies = st.one_of(st.fixed_dictionaries({}, optional={"params": st.one_of(params, values), "url": values}), values)

    deep = st.tuples(st.integers(1, 4000), st.sampled_from([b"[", b'{"a":', b'{"params": {"p1": ['])).map(
        lambda pair: pair[1] * pair[0])
    huge_numbers = st.sampled_from([b'{"params": {"p1": "visit", "p2": 1' + b"0" * 5000 + b"}}",
                                    b'{"params": {"p1": "visit", "p2": 1e999}}', b'{"params": {"p1": "visit", "p2": NaN}}'])

    @settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(body=bodies, raw=st.one_of(st.none(), st.binary(max_size=64), deep, huge_numbers),
           fetch_site=st.sampled_from([None, "same-origin", "cross-site", "none", ""]),
           consent=st.sampled_from([None, "1", "no"]), rsa=st.one_of(st.just(VISITOR), texts))
    def request(body, raw, fetch_site, consent, rsa) -> None:
        client = app.test_client()
        if consent is not None:
            client.set_cookie("consent", consent)
        if rsa.isprintable() and ";" not in rsa and "\ud800" not in rsa:
            client.set_cookie("rsa", rsa)
        headers = {} if fetch_site is None else {"Sec-Fetch-Site": fetch_site}
        if raw is not None:
            response = client.post("/cdp/track", data=raw, content_type="application/json", headers=headers)
        else:
            data = json.dumps(body)
            response = client.post("/cdp/track", data=data, content_type="application/json", headers=headers)
        assert response.status_code in {204, 400, 403, 413, 415, 429}, response.get_data(as_text=True)

    request()


def test_the_sender_reports_its_counts_periodically(host: FakeTrackingHost, caplog) -> None:
    import logging

    reports = []
    sender = EventSender(report_seconds=0.2, on_report=reports.append)
    with caplog.at_level(logging.INFO, logger="cdp_bridge.tracking"):
        sender.enqueue(sender_event(host.url, "1", p1="one"))
        host.wait_for(lambda h: len(h.hits) == 1)
        wait_until(lambda: reports, "no periodic report", seconds=5)  # no stop: the minute's report, here every 0.2 s
        assert (reports[0].sent, reports[0].failed, reports[0].dropped) == (1, 0, 0)
        assert "server-side tracking: sent=1 failed=0 dropped=0 queued=0" in caplog.text
        sender.stop()
    assert len(reports) == 1  # nothing changed since: no second line
