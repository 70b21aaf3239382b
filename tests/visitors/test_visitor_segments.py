"""Visitor segments (SPEC section 9): anonymous visitors' audiences from Raptor's CDP API,
against a local fake of that API (a real HTTP server), never a patched function."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask, render_template_string
from flask_caching import Cache
from freezegun import freeze_time

from cdp_bridge import CDP, ConfigurationError, ValidationError
from cdp_bridge.metrics import REGISTRY
from tests.support.fake_membership_api import FakeMembershipAPI, Reply
from tests.support.logs import KNOWN_SECRETS
from tests.support.loopback import bare_app
from tests.support.webhook import cdp_of

ACTIVATION_ID = "cdp-api-activation-7"
API_KEY = "membership-api-key-secret-6d1f0e"
KNOWN_SECRETS.add(API_KEY)
VISITOR = "0b6f7c2e-5a3d-4e1f-9c8b-7a6d5e4f3a2b"
OTHER_VISITOR = "1c7a8d3f-6b4e-4f2a-8d9c-8b7e6f5a4b3c"
CATS = Reply.memberships(("5d822e81", "Cat owners"), ("77aa0001", "VIP"))
CHECKS = ["Cat owners", "5d822e81", "VIP", "nope", "shop/Cat owners"]
PAGE = ("{% for s in checks %}{{ s }}={{ cdp_in_segment(s) }};{% endfor %}"
        "|{{ cdp_user_segments()|map(attribute='name')|join(',') }}")


@pytest.fixture
def api() -> Iterator[FakeMembershipAPI]:
    fake = FakeMembershipAPI(replies={VISITOR: CATS})
    yield fake
    fake.close()


@pytest.fixture
def make_site(tmp_path: Path, api: FakeMembershipAPI):
    def make(cdp: CDP | None = None, **config) -> Flask:
        app = Flask("visitor_site", instance_path=str(tmp_path / "instance"))
        app.config.update(TESTING=True, SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/site.sqlite3",
                          CDP_CONSENT_COOKIE="consent", CDP_MEMBERSHIP_API_URL=api.url,
                          CDP_MEMBERSHIP_ACTIVATION_ID=ACTIVATION_ID, CDP_MEMBERSHIP_API_KEY=API_KEY,
                          CDP_MEMBERSHIP_TIMEOUT=0.5, CDP_INLINE_WORKER=False)
        app.config.update(config)
        (cdp or CDP()).init_app(app)

        @app.get("/page")
        def page() -> str:
            return render_template_string(PAGE, checks=CHECKS)

        return app

    return make


def visit(app: Flask, visitor: str | None = VISITOR, consent: str | None = "1") -> str:
    client = app.test_client()
    if visitor is not None:
        client.set_cookie("rsa", visitor)
    if consent is not None:
        client.set_cookie("consent", consent)
    response = client.get("/page")
    assert response.status_code == 200
    return response.get_data(as_text=True)


IN_CATS = "Cat owners=True;5d822e81=True;VIP=True;nope=False;shop/Cat owners=False;|Cat owners,VIP"
IN_NONE = "Cat owners=False;5d822e81=False;VIP=False;nope=False;shop/Cat owners=False;|"


def test_a_visitor_is_answered_from_the_cdp_api_with_its_headers(make_site, api: FakeMembershipAPI, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="cdp_bridge.membership"):
        assert visit(make_site()) == IN_CATS  # by audience id or name; no group for a visitor's audiences
    (asked,) = api.asked  # five checks and a list: one call
    assert asked.path == "/api/v3/memberships/coid" and asked.visitor_id == VISITOR
    assert asked.headers["x-activation-id"] == ACTIVATION_ID and asked.headers["x-api-key"] == API_KEY
    assert '"name": "Cat owners"' in caplog.text and "X-API-KEY [redacted]" in caplog.text  # the raw answer, at DEBUG
    assert API_KEY not in caplog.text


def test_the_key_echoed_in_an_answer_is_redacted_from_the_debug_line(make_site, api: FakeMembershipAPI, caplog) -> None:
    api.replies[VISITOR] = Reply(status=401, body=f'{{"error": "bad key {API_KEY}"}}'.encode())
    with caplog.at_level(logging.DEBUG, logger="cdp_bridge.membership"):
        assert visit(make_site()) == IN_NONE
    assert "bad key [redacted]" in caplog.text and API_KEY not in caplog.text


@pytest.mark.parametrize(("reply", "expected"), [
    (CATS, IN_CATS),
    (Reply(body=b"{}"), IN_NONE),
    (Reply(body=b'{"memberships": []}'), IN_NONE),
    (Reply(body=b'{"memberships": [{"id": "5d822e81", "name": "Cat owners", "score": 0.9}, {"name": "no id"}, 7,'
                b' {"id": 77, "extra": {}}], "cursor": null, "version": 3}'),
     "Cat owners=True;5d822e81=True;VIP=False;nope=False;shop/Cat owners=False;|Cat owners,77"),
    (Reply(status=401, body=b'{"error": "unauthorized"}'), IN_NONE),
    (Reply(status=403), IN_NONE),
    (Reply(status=404, body=b"not found"), IN_NONE),
    (Reply(status=500, body=b"<html>oops</html>"), IN_NONE),
    (Reply(body=b"{not json"), IN_NONE),
    (Reply(body=b'["a list"]'), IN_NONE),
    (Reply(body=b'{"memberships": "all"}'), IN_NONE),
    (Reply(delay=1.5), IN_NONE),  # beyond CDP_MEMBERSHIP_TIMEOUT (0.5 s)
], ids=["200", "empty", "no memberships", "unknown keys", "401", "403", "404", "500", "bad JSON", "not an object",
        "not a list", "slow"])
def test_every_answer_leaves_the_page_working(make_site, api: FakeMembershipAPI, reply: Reply, expected: str) -> None:
    api.replies[VISITOR] = reply
    assert visit(make_site()) == expected
    assert api.calls_for(VISITOR) == 1


def test_a_failure_logs_one_warning_per_episode(make_site, api: FakeMembershipAPI, caplog) -> None:
    api.default = Reply(status=500)
    app = make_site(CDP_MEMBERSHIP_FAILURES_BEFORE_PAUSE=10)
    with caplog.at_level(logging.INFO, logger="cdp_bridge.membership"):
        for number in range(5):
            visit(app, visitor=f"00000000-0000-4000-8000-00000000000{number}")
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "the CDP API failed (server_error: the CDP API answered 500)" in warnings[0].message
        api.default = Reply()
        visit(app, visitor="00000000-0000-4000-8000-000000000009")
    assert "the CDP API answers again (after 5 failed calls)" in caplog.text


def test_the_cache_keeps_an_answer_for_its_ttl(make_site, api: FakeMembershipAPI) -> None:
    with freeze_time("2026-11-29 10:00:00") as clock:
        app = make_site(CDP_VISITOR_SEGMENTS_CACHE_TTL=300)
        assert visit(app) == IN_CATS and visit(app) == IN_CATS
        assert api.calls_for(VISITOR) == 1
        clock.tick(timedelta(seconds=299))
        api.replies[VISITOR] = Reply.memberships(("77aa0001", "VIP"))  # the CDP moved the visitor
        assert visit(app) == IN_CATS  # still the cached answer
        clock.tick(timedelta(seconds=2))
        assert visit(app).endswith("|VIP")
        assert api.calls_for(VISITOR) == 2


def test_without_a_cache_each_request_asks_once_whatever_the_page_checks(make_site, api: FakeMembershipAPI) -> None:
    app = make_site(CDP_VISITOR_SEGMENTS_CACHE_TTL=0)
    for _ in range(3):
        assert visit(app) == IN_CATS
    assert api.calls_for(VISITOR) == 3  # one per request, not one per check


def test_concurrent_requests_of_one_uncached_visitor_make_one_call(make_site, api: FakeMembershipAPI) -> None:
    api.replies[VISITOR] = Reply(body=CATS.body, delay=0.4)
    app = make_site(CDP_MEMBERSHIP_TIMEOUT=2)
    pages: list[str] = []
    threads = [threading.Thread(target=lambda: pages.append(visit(app))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert pages == [IN_CATS] * 8
    assert api.calls_for(VISITOR) == 1


@pytest.mark.parametrize(("visitor", "consent"), [
    (VISITOR, None), (VISITOR, "0"), (VISITOR, "no"), (None, "1"), ("not-a-uuid", "1"), (VISITOR + "0", "1"),
    ("0b6f7c2e5a3d4e1f9c8b7a6d5e4f3a2b", "1"), ("../../admin", "1"), ("", "1"),
], ids=["no consent", "consent 0", "consent no", "no cookie", "not a uuid", "too long", "no dashes", "path", "empty"])
def test_no_call_without_consent_or_a_uuid_cookie(make_site, api: FakeMembershipAPI, visitor, consent) -> None:
    assert visit(make_site(), visitor=visitor, consent=consent) == IN_NONE
    assert api.asked == []


def test_without_a_consent_setting_nobody_has_consented(make_site, api: FakeMembershipAPI) -> None:
    assert visit(make_site(CDP_CONSENT_COOKIE=None)) == IN_NONE
    assert api.asked == []


def test_a_consent_loader_replaces_the_cookie(make_site, api: FakeMembershipAPI) -> None:
    cdp = CDP()
    answers = {"consent": True}
    cdp.consent_loader(lambda: answers["consent"])
    app = make_site(cdp)
    assert visit(app, consent=None) == IN_CATS
    answers["consent"] = False
    assert visit(app, visitor=OTHER_VISITOR, consent="1") == IN_NONE  # the loader says no, whatever the cookie
    assert api.calls_for(OTHER_VISITOR) == 0


def test_a_logged_in_user_is_answered_from_the_store_not_the_api(make_site, api: FakeMembershipAPI) -> None:
    cdp = CDP()
    cdp.user_id_loader(lambda: "42")
    app = make_site(cdp)
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group("shop", "Shop")
        cdp.store.add_members("shop", "vip", ["42"], name="VIP")
    assert visit(app) == "Cat owners=False;5d822e81=False;VIP=True;nope=False;shop/Cat owners=False;|VIP"
    assert api.asked == []


def test_the_circuit_breaker_pauses_calls_then_tries_again(make_site, api: FakeMembershipAPI, caplog) -> None:
    api.default = Reply(status=503)
    visitors = [f"00000000-0000-4000-8000-{n:012d}" for n in range(10)]
    with freeze_time("2026-11-29 10:00:00") as clock, caplog.at_level(logging.INFO, logger="cdp_bridge.membership"):
        app = make_site(CDP_MEMBERSHIP_FAILURES_BEFORE_PAUSE=2, CDP_MEMBERSHIP_PAUSE_SECONDS=30)
        calls_before = {outcome: _calls(outcome) for outcome in ("ok", "server_error")}
        assert _breaker_open() == 0
        for visitor in visitors[:5]:
            assert visit(app, visitor=visitor) == IN_NONE
        assert len(api.asked) == 2  # two failures, then the calls pause
        assert _breaker_open() == 1  # cdp_breaker_open{client="membership"}
        assert "2 failed calls in a row; calls pause for 30 s" in caplog.text
        clock.tick(timedelta(seconds=31))
        assert visit(app, visitor=visitors[5]) == IN_NONE  # one call tries again, and fails
        assert visit(app, visitor=visitors[6]) == IN_NONE  # paused again
        assert len(api.asked) == 3
        clock.tick(timedelta(seconds=31))
        api.default = CATS
        assert visit(app, visitor=visitors[7]) == IN_CATS  # the trial call succeeds: closed
        assert visit(app, visitor=visitors[8]) == IN_CATS
        assert len(api.asked) == 5
        assert _breaker_open() == 0
    assert "the CDP API answers again (after 3 failed calls)" in caplog.text
    # cdp_membership_api_calls_total by outcome: the calls made, not the pages served.
    assert _calls("server_error") - calls_before["server_error"] == 3
    assert _calls("ok") - calls_before["ok"] == 2
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def _calls(outcome: str) -> float:
    return REGISTRY.get_sample_value("cdp_membership_api_calls_total", {"outcome": outcome}) or 0.0


def _breaker_open() -> float | None:
    return REGISTRY.get_sample_value("cdp_breaker_open", {"client": "membership"})


def test_a_flask_caching_backend_is_shared_through_the_hook(make_site, api: FakeMembershipAPI, tmp_path: Path) -> None:
    """Two apps (two gunicorn workers, say) with one Flask-Caching store: one call."""
    config = {"CACHE_TYPE": "FileSystemCache", "CACHE_DIR": str(tmp_path / "cache"), "CACHE_DEFAULT_TIMEOUT": 60}
    sites = []
    for _ in range(2):
        cdp = CDP()
        site = make_site(cdp)
        cache = Cache(site, config=config)
        cdp.visitor_segments_cache(cache)
        sites.append(site)
    assert visit(sites[0]) == IN_CATS
    assert visit(sites[1]) == IN_CATS
    assert api.calls_for(VISITOR) == 1
    with sites[1].app_context():
        key = f"cdp_bridge:visitor_segments:{api.url}/api/v3/memberships/coid:{ACTIVATION_ID}:{VISITOR}"
        assert json.loads(cache.get(key)) == {"v": 1, "value": [{"id": "5d822e81", "name": "Cat owners"},
                                                                {"id": "77aa0001", "name": "VIP"}]}


def test_the_cache_hook_refuses_what_is_no_cache() -> None:
    from cdp_bridge import RegistrationError

    with pytest.raises(RegistrationError, match="needs an object with get"):
        CDP().visitor_segments_cache(object())


def test_visitor_segments_from_python(make_site, api: FakeMembershipAPI) -> None:
    cdp = CDP()
    app = make_site(cdp)
    with app.app_context():
        found = cdp.visitor_segments(VISITOR.upper())
        assert [(s.identifier, s.name) for s in found] == [("5d822e81", "Cat owners"), ("77aa0001", "VIP")]
        with pytest.raises(ValidationError, match="visitor_id must be a UUID"):
            cdp.visitor_segments("x")
    assert api.asked[0].visitor_id == VISITOR  # the id as the cookie gives it, in lower case


def test_visitor_segments_from_python_need_the_settings(tmp_path: Path) -> None:
    app = bare_app(tmp_path)
    with app.app_context(), pytest.raises(ConfigurationError, match="CDP_MEMBERSHIP_ACTIVATION_ID and CDP_MEMBERSHIP_API_KEY"):
        cdp_of(app).visitor_segments(VISITOR)


@pytest.mark.parametrize(("config", "message"), [
    ({"CDP_MEMBERSHIP_API_KEY": "k"}, "CDP_MEMBERSHIP_ACTIVATION_ID: required together with CDP_MEMBERSHIP_API_KEY"),
    ({"CDP_MEMBERSHIP_ACTIVATION_ID": "a"}, "CDP_MEMBERSHIP_API_KEY: required together with CDP_MEMBERSHIP_ACTIVATION_ID"),
    ({"CDP_MEMBERSHIP_TIMEOUT": "0"}, "CDP_MEMBERSHIP_TIMEOUT: expected seconds between 0.05 and 60"),
    ({"CDP_MEMBERSHIP_TIMEOUT": "nan"}, "CDP_MEMBERSHIP_TIMEOUT: expected seconds between 0.05 and 60"),
    ({"CDP_VISITOR_SEGMENTS_CACHE_TTL": "-1"}, "CDP_VISITOR_SEGMENTS_CACHE_TTL: expected a whole number of seconds"),
    ({"CDP_MEMBERSHIP_API_URL": "ftp://x"}, "CDP_MEMBERSHIP_API_URL: expected an http(s) URL"),
    ({"CDP_MEMBERSHIP_ACTIVATION_ID": "a b", "CDP_MEMBERSHIP_API_KEY": "k"}, "CDP_MEMBERSHIP_ACTIVATION_ID: expected"),
    ({"CDP_MEMBERSHIP_PAUSE_SECONDS": "0"}, "CDP_MEMBERSHIP_PAUSE_SECONDS: expected a whole number of seconds"),
])
def test_bad_visitor_settings_are_refused(tmp_path: Path, config: dict, message: str) -> None:
    app = Flask("bad", instance_path=str(tmp_path / "i"))
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/b.sqlite3", **config)
    with pytest.raises(ConfigurationError) as refused:
        CDP(app)
    assert message in str(refused.value)
    assert "membership-api-key" not in str(refused.value)


def check(app: Flask):
    return app.test_cli_runner().invoke(args=["cdp", "check"])


def test_check_tries_the_credentials_once(make_site, api: FakeMembershipAPI) -> None:
    app = make_site()
    result = check(app)
    assert f"ok    visitor segments: the CDP API at {api.url}/api/v3/memberships/coid accepted the credentials" in result.output
    assert api.asked[-1].visitor_id == "00000000-0000-4000-8000-000000000000"

    api.default = Reply(status=401)
    result = check(app)
    assert result.exit_code == 1
    assert "FAIL  visitor segments: the CDP API refused the credentials (401)" in result.output
    assert "check CDP_MEMBERSHIP_ACTIVATION_ID and CDP_MEMBERSHIP_API_KEY" in result.output
    assert API_KEY not in result.output

    api.default = Reply(status=404)
    assert "note  visitor segments: the CDP API at" in check(app).output

    api.default = Reply(delay=1.5)
    assert "FAIL  visitor segments: no complete answer within 0.5 s" in check(app).output


def test_check_says_visitor_segments_are_off(tmp_path: Path) -> None:
    app = bare_app(tmp_path)
    assert "note  visitor segments off" in check(app).output


@pytest.mark.slow
def test_any_answer_is_read_or_refused_cleanly() -> None:
    """3,000 generated answers, hostile ones among them (deep nesting, huge strings and
    arrays, lone surrogates and control characters in ids and names): parse_memberships
    gives memberships of acceptable text, or MembershipFailure, nothing else."""
    import json

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from cdp_bridge.identifiers import text_problem
    from cdp_bridge.visitors import MembershipFailure
    from cdp_bridge.visitors.client import parse_memberships

    hostile_text = st.one_of(st.text(max_size=20), st.text(max_size=5).map(lambda t: t + "\ud800" + t),
                             st.sampled_from(["\u2028evil\r\nFORGED", "a\x00b", "\u202eevil", "x" * 300, " ", "\x85"]))
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), hostile_text)
    values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                              max_size=4), max_leaves=10)
    entries = st.lists(st.one_of(values, st.fixed_dictionaries({}, optional={"id": values, "name": values})), max_size=5)
    documents = st.one_of(values, st.fixed_dictionaries({}, optional={"memberships": st.one_of(entries, values)}))
    encoded = documents.map(lambda document: json.dumps(document).encode("utf-8", "surrogatepass"))
    deep = st.integers(min_value=1, max_value=200_000).map(lambda depth: b'{"memberships": ' + b"[" * depth + b"]" * depth + b"}")
    huge = st.sampled_from([b'{"memberships": [' + b"0," * 300_000 + b"0]}",
                            b'{"memberships": [{"id": "' + b"7" * 500_000 + b'"}]}'])
    answers = st.one_of(encoded, deep, huge, st.binary(max_size=30), st.text(max_size=30).map(str.encode))

    @settings(max_examples=3000, deadline=None)
    @given(answers)
    def read(body: bytes) -> None:
        try:
            found = parse_memberships(body)
        except MembershipFailure as failure:
            assert failure.reason == "bad_answer"
            return
        for membership in found:
            assert text_problem(membership.id, max_length=255) is None and membership.id
            assert text_problem(membership.name, max_length=255) is None and membership.name
        assert len({m.id for m in found}) == len(found)

    read()


@pytest.mark.slow
def test_drip_fed_and_oversized_answers_never_hold_a_page(make_site, api: FakeMembershipAPI) -> None:
    """25 generated answers over HTTP, each drip-fed or sent whole, of any size around the
    limit: every page renders within the timeout (0.5 s) and a little more."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    app = make_site(CDP_MEMBERSHIP_FAILURES_BEFORE_PAUSE=1000, CDP_VISITOR_SEGMENTS_CACHE_TTL=0)

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(drip=st.sampled_from([0.0, 0.01, 0.1]), size=st.sampled_from([10, 1000, 1024 * 1024 - 40, 1024 * 1024 + 10]),
           declared=st.booleans())
    def page(drip: float, size: int, declared: bool) -> None:
        body = CATS.body[:-2] + b"]" + b" " * max(0, size - len(CATS.body)) + b"}"
        api.replies[VISITOR] = Reply(body=body if drip == 0 else body[:200], drip=drip, content_length=declared)
        started = time.monotonic()
        assert visit(app) in {IN_CATS, IN_NONE}
        assert time.monotonic() - started < 1.5

    page()


DEEP = b'{"memberships": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
OVER_LIMIT = 1024 * 1024 + 1


@pytest.mark.parametrize(("reply", "warning"), [
    (Reply(body=DEEP), "bad_answer: the answer is not valid JSON: nested too deeply"),
    (Reply(body=b'{"memberships": [{"id": "a", "name": "' + b"x" * OVER_LIMIT + b'"}]}'), "the answer is larger than 1048576 bytes"),
    (Reply(body=b'{"memberships": [' + b"0," * OVER_LIMIT + b"0]}"), "the answer is larger than 1048576 bytes"),
    (Reply(body=b'{"memberships": [' + b'{"id": "a"},' * 100_000 + b"{}]}", content_length=False),
     "the answer is larger than 1048576 bytes"),
    (Reply(body=b'{"memberships": []}' + b" " * 40, drip=0.02), "timeout: no complete answer within 0.5 s"),
    (Reply(body=b'{"memberships": [{"id": "a", "name": "' + b"x" * 300 + b'"}]}'),
     "skipped 1 entries of the CDP API's answer that are not acceptable text (first: segment name must be at most 255"),
], ids=["deep", "huge-string", "huge-array", "undeclared-size", "drip-fed", "long-name"])
def test_a_hostile_answer_gives_no_segments_and_one_warning(make_site, api: FakeMembershipAPI, caplog, reply: Reply,
                                                            warning: str) -> None:
    """Each of these made a 500, a 43 s page or a stored segment before: now the page
    renders at once, without segments, and one WARNING says why."""
    api.replies[VISITOR] = reply
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="cdp_bridge.membership"):
        assert visit(make_site()) == IN_NONE
    assert time.monotonic() - started < 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warning in warnings[0], warnings


def test_text_that_is_not_acceptable_is_skipped_entry_by_entry(make_site, api: FakeMembershipAPI, caplog) -> None:
    """A lone surrogate or control characters from Raptor must not reach the page (it
    answered 500 with a UnicodeEncodeError) nor the cache; the good entries are kept."""
    api.replies[VISITOR] = Reply(body=b'{"memberships": [{"id": "\\ud800x", "name": "\\u2028evil\\r\\nFORGED"},'
                                      b' {"id": "77aa0001", "name": "VIP"}, {"id": "5d822e81", "name": "Cat\\u0007owners"}]}')
    app = make_site()
    with caplog.at_level(logging.WARNING, logger="cdp_bridge.membership"):
        assert visit(app) == "Cat owners=False;5d822e81=False;VIP=True;nope=False;shop/Cat owners=False;|VIP"
        assert visit(app) == "Cat owners=False;5d822e81=False;VIP=True;nope=False;shop/Cat owners=False;|VIP"  # cached
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("visitor segments: skipped 2 entries of the CDP API's answer that are not acceptable text"
                              " (first: segment identifier must be valid Unicode text")
    assert api.calls_for(VISITOR) == 1


def test_a_redirect_is_a_failure_and_the_key_goes_nowhere_else(make_site, api: FakeMembershipAPI, caplog) -> None:
    from tests.support.loopback import Listener

    other_host = Listener("127.0.0.2")
    api.replies[VISITOR] = Reply(status=302, headers={"Location": f"{other_host.url}/steal"})
    try:
        with caplog.at_level(logging.DEBUG, logger="cdp_bridge.membership"):
            assert visit(make_site()) == IN_NONE
    finally:
        other_host.close()
    assert other_host.requests == []
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["visitor segments: the CDP API failed (redirect: answered 302 with a redirect to 127.0.0.2, which is"
                        " not followed); visitors get no segments until it answers again (one line per episode)"]
    assert API_KEY not in caplog.text


def test_an_all_zero_uuid_is_no_visitor_id(make_site, api: FakeMembershipAPI) -> None:
    assert visit(make_site(), visitor="00000000-0000-0000-0000-000000000000") == IN_NONE
    assert api.asked == []


def test_a_bad_user_id_from_the_loader_gives_no_segments_and_one_error(make_site, api: FakeMembershipAPI, caplog) -> None:
    cdp = CDP()

    @cdp.user_id_loader
    def user() -> str:
        return "user\x07one"

    with caplog.at_level(logging.ERROR, logger="cdp_bridge"):
        assert visit(make_site(cdp=cdp)) == IN_NONE
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["cdp_in_segment / cdp_user_segments: no segments for this page: the current user's id:"
                      " user id must not contain control characters"]


def test_a_page_personalised_by_the_visitors_cookies_says_it_varies_by_them(make_site, api: FakeMembershipAPI) -> None:
    """A shared cache (a CDN, a proxy) must not serve one visitor's segments to another:
    as Flask's own session does, the page carries Vary: Cookie."""
    app = make_site()

    @app.get("/plain")
    def plain() -> str:
        return "the same for everybody"

    client = app.test_client()
    client.set_cookie("rsa", VISITOR)
    client.set_cookie("consent", "1")
    personal = client.get("/page")
    assert personal.get_data(as_text=True) == IN_CATS and personal.headers["Vary"] == "Cookie"
    assert "Vary" not in client.get("/plain").headers  # no helper read a cookie
    anonymous = app.test_client().get("/page")  # no cookie at all: the consent cookie was still asked
    assert anonymous.headers["Vary"] == "Cookie"
