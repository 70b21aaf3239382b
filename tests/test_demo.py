"""The demo shop: its pages, basket, checkout, login and the personalisation example."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

import wsgi
from cdp_bridge import ConfigurationError
from cdp_bridge.store import membership
from demo.extensions import db
from demo.models import DemoUser
from tests.support.browser import stop_background_threads
from tests.support.polling import wait_until
from tests.support.processes import REPO


@pytest.fixture
def demo(tmp_path) -> Iterator[Flask]:
    app = wsgi.create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    yield app
    stop_background_threads(app)


def test_first_run_creates_users_groups_and_a_secret(demo: Flask, tmp_path) -> None:
    with demo.app_context():
        store = demo.extensions["cdp"].store
        groups = {g.identifier: g for g in store.list_groups()}
        assert groups["demo_shop"].protected
        assert not groups["demo_interests"].protected
        assert store.members("demo_interests", "newsletter") == ["1", "3"]
        assert store.members("demo_shop", "9a1f0c37") == ["1"]  # the CDP's push before the one it missed
        assert store.get_segment("demo_shop", "5d822e81").name == "Cat owners"
    secret = demo.config["CDP_ACTIVATION_CLIENT_SECRET"]
    assert len(secret) >= 32
    assert secret in (tmp_path / "instance" / "demo-secrets.json").read_text()


def test_a_second_start_keeps_the_data_and_secret(demo: Flask, tmp_path) -> None:
    again = wsgi.create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    assert again.config["CDP_ACTIVATION_CLIENT_SECRET"] == demo.config["CDP_ACTIVATION_CLIENT_SECRET"]
    with again.app_context():
        assert len(again.extensions["cdp"].store.list_groups()) == 2


BUILD_AND_PRINT_SECRET = ("import sys; from demo.app import create_app; "
                          "print(create_app(instance_path=sys.argv[1]).config['CDP_ACTIVATION_CLIENT_SECRET'])")


@pytest.mark.slow
def test_workers_starting_at_once_share_one_first_run(tmp_path) -> None:
    """gunicorn's workers build the demo together on its first run: each one starts, and
    all of them hold the same activation secret (one read the secrets' file while
    another rewrote it, and failed to boot; or each made its own: before the fix, 6
    at once, 8 times, failed this in each of 5 runs)."""
    import subprocess
    import sys

    for attempt in range(8):
        instance = tmp_path / f"instance-{attempt}"
        workers = [subprocess.Popen([sys.executable, "-c", BUILD_AND_PRINT_SECRET, str(instance)], cwd=tmp_path,
                                    env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for _ in range(6)]
        answers = [worker.communicate(timeout=120) for worker in workers]
        assert [worker.returncode for worker in workers] == [0] * 6, [err[-300:] for _, err in answers]
        assert len({out.strip() for out, _ in answers}) == 1


def test_landing_and_product_pages(demo: Flask) -> None:
    client = demo.test_client()
    landing = client.get("/")
    assert landing.status_code == 200
    assert b"Reflective dog leash" in landing.data
    page = client.get("/products/cat-tree")
    assert page.status_code == 200
    assert b"Cat tree &#34;Skyscraper&#34;" in page.data
    assert client.get("/products/unknown").status_code == 404


def test_basket_and_checkout(demo: Flask) -> None:
    client = demo.test_client()
    client.post("/basket", data={"product_id": "cat-food", "quantity": "2"})
    client.post("/basket", data={"product_id": "dog-leash", "quantity": "1"})
    basket = client.get("/basket")
    assert b"Salmon cat food" in basket.data and b"48.00 EUR" in basket.data
    client.post("/basket", data={"product_id": "dog-leash", "quantity": "0", "set": "1"})
    assert b"Reflective dog leash" not in client.get("/basket").data
    confirmation = client.post("/checkout", follow_redirects=True)
    assert b"Thank you for your order" in confirmation.data
    assert b"2 \xc3\x97 Salmon cat food" in confirmation.data
    assert confirmation.data.count(b'"p1":"buy"') == 1  # the order's one line, tracked once
    refreshed = client.get("/order")
    assert b"Thank you for your order" in refreshed.data and b'"p1":"buy"' not in refreshed.data
    assert b"Your basket is empty" in client.get("/basket").data


def test_the_consent_banner_offers_accept_and_decline_and_a_decline_is_kept(demo: Flask) -> None:
    client = demo.test_client()
    page = client.get("/").data
    assert b'id="cdp-consent-accept"' in page and b'id="cdp-consent-decline"' in page
    client.set_cookie("cdp_consent", "no")
    declined = client.get("/").data
    assert b'id="cdp-consent-banner"' not in declined  # the choice is remembered
    assert b"document,\"/static/raptor-demo.js\",false" in declined  # and nothing loads without consent


@pytest.mark.parametrize("form", [{"product_id": "nope"}, {"product_id": "cat-food", "quantity": "many"}])
def test_bad_basket_input_is_refused(demo: Flask, form) -> None:
    assert demo.test_client().post("/basket", data=form).status_code == 400


def test_login_shows_the_users_segments(demo: Flask) -> None:
    client = demo.test_client()
    assert client.post("/login", data={"login": "nobody"}).status_code == 400
    page = client.post("/login", data={"login": "alice"}, follow_redirects=True)
    assert b"Signed in as <a href=\"/account\"><strong>Alice Example</strong></a>" in page.data
    assert b"Newsletter readers" in page.data
    assert b"Welcome back, cat lover" not in page.data


def test_personalisation_follows_cdp_segments(demo: Flask) -> None:
    with demo.app_context():
        state = demo.extensions["cdp"]
        with state.engine.begin() as conn:  # as a CDP delivery would
            group_id = state.store.group_id(conn, "demo_shop")
            row, _ = membership.ensure_segment(conn, state.tables, group_id, "5d822e81", "Cat owners")
            membership.add_members(conn, state.tables, row.id, ["2"])
    client = demo.test_client()
    client.post("/login", data={"login": "bob"})
    page = client.get("/")
    assert b"Welcome back, cat lover" in page.data
    assert b'title="demo_shop/5d822e81">Cat owners' in page.data
    client.post("/logout")
    assert b"Welcome back, cat lover" not in client.get("/").data


def run_flask(tmp_path, *args: str, **env: str):
    """Run the real ``flask`` command on the demo with its instance folder in tmp_path."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(wsgi.__file__).parent
    (tmp_path / "demo_app.py").write_text(
        "import wsgi\n"
        f"app = wsgi.create_app(instance_path={str(tmp_path / 'instance')!r})\n"
    )
    environ = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{repo}", **env}
    flask = Path(sys.executable).with_name("flask")
    return subprocess.run(
        [str(flask), "--app", "demo_app", *args], cwd=tmp_path, env=environ, capture_output=True, text=True
    )


def test_the_demos_users_export_with_its_processor(demo: Flask) -> None:
    """The demo's user source (rows on the session's connection) and its processor, which
    reads the row's is_admin column, through ``flask cdp stream-user-data --dry-run``."""
    import json

    demo.config.update(CDP_ACCOUNT_NUMBER="12345", CDP_USER_STREAM_ID="demo-users-stream")
    result = demo.test_cli_runner().invoke(args=["cdp", "stream-user-data", "--dry-run"])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout.splitlines()[0])
    assert items[:2] == [{"id": 1, "login": "alice", "email": "alice@example.com", "name": "Alice Example", "is_admin": True},
                         {"id": 2, "login": "bob", "email": "bob@example.com", "name": "Bob Example", "is_admin": False}]


def test_flask_cdp_reconcile_repairs_the_push_the_demo_missed(tmp_path) -> None:
    """A separate process (as an operator runs it) asks the demo's stand-in for Raptor's
    CDP API, which holds DEMO_AUDIENCES, and repairs the store's first-run copy."""
    from demo.models import DEMO_AUDIENCES, DEMO_GROUP, DEMO_MISSED_PUSH

    def members() -> dict[str, list[str]]:
        app = wsgi.create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
        try:
            with app.app_context():
                store = app.extensions["cdp"].store
                return {segment.identifier: store.members(DEMO_GROUP, segment.identifier)
                        for segment in store.list_segments(DEMO_GROUP)}
        finally:
            stop_background_threads(app)

    def carols_segments() -> str:
        app = wsgi.create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
        try:
            client = app.test_client()
            client.post("/login", data={"login": "carol"})
            page = client.get("/").get_data(as_text=True)
            return page[page.index('id="your-segments"'):page.index("</aside>")]
        finally:
            stop_background_threads(app)

    dry = run_flask(tmp_path, "cdp", "reconcile", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert re.search(r"9a1f0c37: would add 1, would remove 0, unchanged 1, sequence \d+", dry.stdout), dry.stdout
    assert members() == DEMO_MISSED_PUSH
    assert "Big spenders" not in carols_segments()
    repaired = run_flask(tmp_path, "cdp", "reconcile")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert re.search(r"5d822e81: added 0, removed 0, unchanged 1, sequence \d+", repaired.stdout), repaired.stdout
    assert re.search(r"9a1f0c37: added 1, removed 0, unchanged 1, sequence \d+", repaired.stdout), repaired.stdout
    assert members() == {audience: sorted(ids) for audience, (_, ids) in DEMO_AUDIENCES.items()}
    assert "Big spenders" in carols_segments() and "Cat owners" in carols_segments()
    again = run_flask(tmp_path, "cdp", "reconcile")
    assert "9a1f0c37: added 0, removed 0, unchanged 2" in again.stdout, again.stdout + again.stderr


def test_flask_cdp_check_reports_a_healthy_demo(tmp_path) -> None:
    result = run_flask(tmp_path, "cdp", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "segment group 'demo_shop' (activation 'demo-shop')" in result.stdout
    assert "Base URL for the CDP activation: https://<your site>/cdp/webhook" in result.stdout
    assert "WARN" not in result.stdout and "5000" not in result.stdout  # no made-up port, no schedule without its stream
    secret = (tmp_path / "instance" / "demo-secrets.json").read_text()
    assert "activation_client_secret" in secret
    import json

    assert json.loads(secret)["activation_client_secret"] not in result.stdout + result.stderr


def test_a_wrong_setting_stops_the_flask_command_with_status_2(tmp_path) -> None:
    result = run_flask(tmp_path, "cdp", "check", CDP_BULK_ASYNC_THRESHOLD="abc")
    assert result.returncode == 2
    assert "CDP_BULK_ASYNC_THRESHOLD: expected a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_dotenv_is_read_by_the_flask_command(tmp_path) -> None:
    (tmp_path / ".env").write_text("CDP_WEBHOOK_MAX_BYTES=zero\n")
    result = run_flask(tmp_path, "cdp", "check")
    assert result.returncode == 2
    assert "CDP_WEBHOOK_MAX_BYTES" in result.stderr


def test_the_environment_wins_over_the_demos_defaults(tmp_path) -> None:
    database = tmp_path / "site.sqlite3"
    (tmp_path / ".env").write_text(f"SQLALCHEMY_DATABASE_URI=sqlite:///{database}\nSECRET_KEY=a-long-random-key-for-the-site-0123456789\n"
                                   "CDP_ACCOUNT_NUMBER=123456\nCDP_ACTIVATION_CLIENT_ID=site\n"
                                   "CDP_ACTIVATION_CLIENT_SECRET=site-secret-value\nCDP_SEGMENT_GROUP_IDENTIFIER=site_group\n")
    assert not database.exists()  # a site's factory makes no table: init-db does
    assert run_flask(tmp_path, "cdp", "init-db").returncode == 0
    result = run_flask(tmp_path, "cdp", "check")
    assert "account number 123456" in result.stdout, result.stdout + result.stderr
    assert "segment group 'site_group' (activation 'site')" in result.stdout  # the .env's activation, not the demo's
    assert database.exists() and not (tmp_path / "instance" / "demo.sqlite3").exists()
    assert "site-secret-value" not in result.stdout + result.stderr


def test_a_site_database_without_a_secret_key_refuses_to_start(tmp_path) -> None:
    (tmp_path / ".env").write_text(f"SQLALCHEMY_DATABASE_URI=sqlite:///{tmp_path / 'site.sqlite3'}\n")
    result = run_flask(tmp_path, "cdp", "check")
    assert result.returncode == 2
    assert "SECRET_KEY is not" in result.stderr and "Traceback" not in result.stderr


GOOD_SITE_ENV = {"SECRET_KEY": "a-long-random-key-for-the-site-0123456789", "SHOP_ADMIN_PASSWORD": "back-office-password",
                 "CDP_ACTIVATION_CLIENT_ID": "site", "CDP_ACTIVATION_CLIENT_SECRET": "site-secret-value-0123",
                 "CDP_SEGMENT_GROUP_IDENTIFIER": "site_group"}


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("SECRET_KEY", "...", "SECRET_KEY: expected a real secret, not a placeholder"),
    ("SECRET_KEY", "short-key", "SECRET_KEY: expected a secret of at least 32 characters"),
    ("SHOP_ADMIN_PASSWORD", "...", "SHOP_ADMIN_PASSWORD: expected a real secret, not a placeholder"),
    ("SHOP_ADMIN_PASSWORD", "admin", "SHOP_ADMIN_PASSWORD: expected a secret of at least 12 characters"),
    ("CDP_ACTIVATION_CLIENT_SECRET", "...", "CDP_ACTIVATION_CLIENT_SECRET: expected a real secret, not a placeholder"),
    ("CDP_WEBHOOK_SIGNING_SECRETS", "[whsec_abc", "CDP_WEBHOOK_SIGNING_SECRETS: expected valid JSON"),
    ("CDP_WEBHOOK_SIGNING_SECRETS", "whsec_", "CDP_WEBHOOK_SIGNING_SECRETS: entry 0: expected a key of 24-64 bytes"),
])
def test_a_pasted_env_with_placeholders_or_a_malformed_value_stops_with_status_2(tmp_path, key, value, expected) -> None:
    """The README's .env pasted with ``...`` left in, an empty signing key, a JSON typo:
    each named, with status 2 and no traceback."""
    settings = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'site.sqlite3'}", **GOOD_SITE_ENV, key: value}
    (tmp_path / ".env").write_text("".join(f"{name}={text}\n" for name, text in settings.items()))
    result = run_flask(tmp_path, "cdp", "check")
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_check_and_send_test_activation_use_gunicorn_bind(tmp_path) -> None:
    """A site served on GUNICORN_BIND: check's Base URL and send-test-activation's target
    are there, not on the development server's port 5000."""
    from tests.support.postgres_server import free_port

    port = free_port()
    settings = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'site.sqlite3'}", **GOOD_SITE_ENV,
                "GUNICORN_BIND": f"0.0.0.0:{port}"}
    (tmp_path / ".env").write_text("".join(f"{name}={text}\n" for name, text in settings.items()))
    assert run_flask(tmp_path, "cdp", "init-db").returncode == 0
    check = run_flask(tmp_path, "cdp", "check")
    assert f"Base URL for the CDP activation: http://127.0.0.1:{port}/cdp/webhook" in check.stdout, check.stdout
    sent = run_flask(tmp_path, "cdp", "send-test-activation")  # nothing listens there
    assert sent.returncode == 1 and f"could not reach http://127.0.0.1:{port}/cdp/webhook" in sent.stderr, sent.stderr


@pytest.mark.slow
def test_every_export_command_of_the_readme_runs_in_the_demo(tmp_path) -> None:
    for kind in ("user", "product", "content"):
        result = run_flask(tmp_path, "cdp", f"stream-{kind}-data", "--dry-run")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("[{")
    content = run_flask(tmp_path, "cdp", "stream-content-data", "--dry-run").stdout
    assert '"id":"guide-cat-tree","type":"article"' in content and '"published_at":"2026-03-01"' in content


@pytest.fixture
def site(tmp_path, monkeypatch) -> Iterator[Flask]:
    """The shop configured as a site by the environment alone: its own database."""
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", f"sqlite:///{tmp_path / 'site.sqlite3'}")
    monkeypatch.setenv("SECRET_KEY", "a-long-random-key-for-the-site-0123456789")
    monkeypatch.setenv("SHOP_ADMIN_PASSWORD", "back-office-password")
    monkeypatch.setenv("CDP_ACCOUNT_NUMBER", "123456")
    app = wsgi.create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    for command in (["cdp", "init-db"], ["shop", "init-db"]):  # the factory of a site makes no table
        assert app.test_cli_runner().invoke(args=command).exit_code == 0
    yield app
    stop_background_threads(app)


def test_a_site_has_no_demo_logins_no_demo_data_and_no_demo_script(site: Flask) -> None:
    client = site.test_client()
    assert client.get("/login").status_code == 404
    assert client.post("/login", data={"login": "alice"}).status_code == 404
    landing = client.get("/").get_data(as_text=True)
    assert "Log in" not in landing
    with site.app_context():
        assert db.session.scalar(select(DemoUser).limit(1)) is None
        assert site.extensions["cdp"].store.list_groups() == []
    client.set_cookie("cdp_consent", "1")
    page = client.get("/").get_data(as_text=True)
    assert "https://deliver.raptorstatic.com/script/raptor-3.0.min.js" in page and "raptor-demo.js" not in page


def test_a_sites_back_office_asks_for_the_admin_password(site: Flask) -> None:
    import base64

    client = site.test_client()

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    asked = client.get("/cdp/admin/groups")
    assert asked.status_code == 401 and asked.headers["WWW-Authenticate"] == 'Basic realm="back office"'
    assert client.get("/cdp/admin/groups", headers=basic("admin", "wrong")).status_code == 401
    assert client.get("/cdp/admin/groups", headers=basic("alice", "back-office-password")).status_code == 401
    assert client.get("/cdp/admin/groups", headers=basic("admin", "back-office-password")).status_code == 200


def test_a_site_without_an_admin_password_keeps_its_back_office_shut(site: Flask) -> None:
    site.config["SHOP_ADMIN_PASSWORD"] = None
    assert site.test_client().get("/cdp/admin/groups").status_code == 403


VISITOR = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"
CAT_VISIT = {"event": "trackEvent", "params": {"p1": "visit", "p2": "cat-tree", "p4": "pets#Pets;cats#Cats"}}


def test_an_anonymous_visitor_who_looked_at_cats_gets_the_offer(demo: Flask) -> None:
    client = demo.test_client()
    client.set_cookie("cdp_consent", "yes")
    client.set_cookie("rsa", VISITOR)
    assert 'id="personal-offer"' not in client.get("/").get_data(as_text=True)
    dog_visit = {"event": "trackEvent", "params": {"p1": "visit", "p2": "dog-leash", "p4": "pets#Pets;dogs#Dogs"}}
    assert client.post("/demo-raptor/events", json={"coid": VISITOR, "events": [dog_visit]}).status_code == 204
    demo.extensions["cdp"].visitor_segments.cache.clear()  # the demo caches an answer for 10 s
    assert 'id="personal-offer"' not in client.get("/").get_data(as_text=True)
    assert client.post("/demo-raptor/events", json={"coid": VISITOR, "events": [CAT_VISIT]}).status_code == 204
    demo.extensions["cdp"].visitor_segments.cache.clear()
    assert 'id="personal-offer"' in client.get("/").get_data(as_text=True)  # asked over HTTP, from the stand-in
    client.set_cookie("cdp_consent", "no")
    assert 'id="personal-offer"' not in client.get("/").get_data(as_text=True)  # no consent: not even asked


@pytest.mark.parametrize("body", [None, [], {"coid": "x", "events": []}, {"coid": VISITOR, "events": "all"},
                                  {"coid": VISITOR, "events": [CAT_VISIT] * 101}])
def test_the_stand_in_refuses_bad_event_batches(demo: Flask, body) -> None:
    assert demo.test_client().post("/demo-raptor/events", json=body).status_code == 400


def test_the_cdp_api_stand_in_wants_the_demos_key(demo: Flask) -> None:
    import requests

    url = demo.config["CDP_MEMBERSHIP_API_URL"] + "/api/v3/memberships/coid"
    answer = requests.get(url, params={"identifierValue": VISITOR}, headers={"X-ACTIVATION-ID": "demo-cdp-api",
                                                                             "X-API-KEY": "guess"}, timeout=5)
    assert answer.status_code == 401


def test_a_site_has_no_raptor_stand_in(site: Flask) -> None:
    assert site.test_client().post("/demo-raptor/events", json={"coid": VISITOR, "events": []}).status_code == 404
    assert "demo_raptor_stand_in" not in site.extensions


def test_the_demo_switches_to_server_side_tracking_by_one_setting(tmp_path) -> None:
    """CDP_TRACKING_MODE=server: the pages carry no tracking script, the server sends the
    events to the demo's stand-in tracking host, and the visitor it saw look at the cat
    tree is in "Cat owners" on the next pages, all without a script in the browser."""

    app = wsgi.create_app({"TESTING": True, "CDP_TRACKING_MODE": "server"}, instance_path=str(tmp_path / "instance"))
    try:
        client = app.test_client()
        client.set_cookie("cdp_consent", "yes")
        product = client.get("/products/cat-tree")
        page = product.get_data(as_text=True)
        assert "raptor.push" not in page and "raptor-demo.js" not in page
        assert "HttpOnly" in next(h for h in product.headers.getlist("Set-Cookie") if h.startswith("rsa="))
        def offer_shown() -> bool:
            app.extensions["cdp"].visitor_segments.cache.clear()  # the demo caches an answer for 10 s
            return 'id="personal-offer"' in client.get("/").get_data(as_text=True)

        wait_until(offer_shown, "the server-side visit never reached the stand-in", every=0.1)
    finally:
        stop_background_threads(app)


def test_behind_a_tls_proxy_every_cookie_is_secure(tmp_path, monkeypatch) -> None:
    """PROXY_COUNT=1: ProxyFix takes the proxy's X-Forwarded-Proto, so the shop's session
    cookie is Secure like cdp_bridge's rsa cookies, and the limits see the visitor's address."""
    for key, value in {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'site.sqlite3'}", **GOOD_SITE_ENV,
                       "PROXY_COUNT": "1", "CDP_TRACKING_MODE": "server", "CDP_ACCOUNT_NUMBER": "123456",
                       "CDP_SERVER_TRACKING_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(key, value)
    app = wsgi.create_app({"TESTING": True}, instance_path=str(tmp_path / "instance"))
    for command in (["cdp", "init-db"], ["shop", "init-db"]):
        assert app.test_cli_runner().invoke(args=command).exit_code == 0
    try:
        client = app.test_client()
        client.set_cookie("cdp_consent", "1")
        proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
        page = client.get("/products/cat-tree", headers=proxied).headers.getlist("Set-Cookie")
        tracking = [c for c in page if c.startswith(("rsa=", "rsaSession="))]
        assert len(tracking) == 2 and all("Secure" in c for c in tracking), page
        basket = client.post("/basket", data={"product_id": "cat-tree"}, headers=proxied).headers.getlist("Set-Cookie")
        session_cookie = next(c for c in basket if c.startswith("session="))
        assert "Secure" in session_cookie, basket
    finally:
        stop_background_threads(app)
    monkeypatch.setenv("PROXY_COUNT", "many")
    with pytest.raises(ConfigurationError, match="PROXY_COUNT"):
        wsgi.create_app({"TESTING": True}, instance_path=str(tmp_path / "instance2"))


@pytest.mark.parametrize(("command", "schedule", "started"), [
    (None, None, True), ("run", None, True), ("check", None, True), ("till-sale", None, True), ("reconcile", None, True),
    ("worker", "0 3 * * *", True),  # the worker reconciles on a schedule: it asks the CDP API
    ("init-db", None, False), ("worker", None, False), ("segments", None, False)])
def test_the_stand_in_starts_only_when_serving_or_for_a_command_that_calls_raptor(tmp_path, command, schedule,
                                                                                   started) -> None:
    import click

    def build() -> Flask:
        config = {"TESTING": True, **({"CDP_RECONCILE_SCHEDULE": schedule} if schedule else {})}
        return wsgi.create_app(config, instance_path=str(tmp_path / "instance"))

    if command is None:  # gunicorn, or a test: no flask command
        app = build()
    else:
        with click.Context(click.Command(command), info_name=command):
            app = build()
    try:
        assert ("demo_raptor_stand_in" in app.extensions) is started
        if not started:
            assert app.config["CDP_RECOMMENDATIONS_API_URL"] == "http://127.0.0.1:9"  # nothing leaves the machine
    finally:
        stop_background_threads(app)


@pytest.mark.slow
def test_the_demos_first_start_under_gunicorn_with_several_workers(tmp_path) -> None:
    """Every worker builds the demo at once on a fresh clone: one makes the database, the
    users, the groups and the secrets; the others wait for it and use them (no "table
    already exists", no worker that fails to boot, one session key)."""
    import json
    import subprocess
    import sys

    import requests

    from tests.support.logs import remember_output
    from tests.support.postgres_server import free_port
    from tests.support.processes import copy_of_a_clone, process_env, wait_until_serving

    site = tmp_path / "clone"
    copy_of_a_clone(site)
    port = free_port()
    env = {**{key: value for key, value in process_env(site).items() if not key.startswith("GUNICORN_")},
           "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "4"}
    with open(tmp_path / "gunicorn.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], cwd=site, env=env,
                                  stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_serving(base + "/", server)
            wait_until(lambda: (tmp_path / "gunicorn.log").read_text().count("Booting worker with pid") >= 4
                       or server.poll() is not None, "four workers booted", seconds=60)
            statuses = {requests.get(base + "/", timeout=10).status_code for _ in range(20)}
            assert server.poll() is None and statuses == {200}
        finally:
            server.terminate()
            server.wait(timeout=30)
    output = (tmp_path / "gunicorn.log").read_text()
    remember_output(output)
    assert "Worker failed to boot" not in output and "already exists" not in output and "Traceback" not in output
    assert output.count("Booting worker with pid") == 4
    assert set(json.loads((site / "instance" / "demo-secrets.json").read_text())) >= {"session_key"}


def test_the_sites_pages_call_no_recommendation_module_its_env_lacks(tmp_path, monkeypatch, caplog) -> None:
    """The .env of docs/deployment.md configures no recommendation modules: the shop's
    pages render their fallbacks and log nothing (they logged an ERROR on every page)."""
    import logging

    for key, value in {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'site.sqlite3'}", **GOOD_SITE_ENV,
                       "CDP_ACCOUNT_NUMBER": "123456"}.items():
        monkeypatch.setenv(key, value)
    app = wsgi.create_app(instance_path=str(tmp_path / "instance"))
    with app.app_context():
        app.extensions["cdp"].create_tables()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["shop", "init-db"]).exit_code == 0
    client = app.test_client()
    client.set_cookie("cdp_consent", "yes")
    with caplog.at_level(logging.ERROR):
        pages = [client.get(path) for path in ("/", "/products/cat-tree", "/basket")]
    assert [page.status_code for page in pages] == [200, 200, 200]
    assert "Our best sellers" in pages[0].get_data(as_text=True)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    stop_background_threads(app)


def test_the_demo_page_gives_the_test_activation_command_with_its_own_address(demo: Flask) -> None:
    client = demo.test_client()
    client.post("/login", data={"login": "bob"}, base_url="http://127.0.0.1:5057")  # bob is in no segment yet
    page = client.get("/", base_url="http://127.0.0.1:5057").get_data(as_text=True)
    assert "cdp send-test-activation --url http://127.0.0.1:5057/cdp/webhook</code>" in page
