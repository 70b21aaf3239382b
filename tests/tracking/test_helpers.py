"""Tracking helpers: exact markup and parameters, options, bad arguments, hostile strings."""

from __future__ import annotations

import json
import logging
import re
from decimal import Decimal
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
from flask import Flask, render_template_string

from cdp_bridge import CDP
from cdp_bridge.errors import TrackingArgumentError
from cdp_bridge.identifiers import text_problem
from tests.support.webhook import cdp_of

PUSH = re.compile(r'^window\.raptor&&window\.raptor\.push\("trackEvent",(.*)\);$')


@pytest.fixture
def site(sqlite_url: str) -> Flask:
    app = Flask("tracking_site")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_ACCOUNT_NUMBER="1234", CDP_CONSENT_COOKIE="consent",
                      CDP_INLINE_WORKER=False)
    CDP(app)
    return app


def render(app: Flask, template: str, path: str = "/", **context) -> str:
    headers = context.pop("headers", {})
    with app.test_request_context(path, headers=headers):
        return render_template_string(template, **context)


class ScriptCollector(HTMLParser):
    """The text of every <script> element, as a browser's HTML parser would split it."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self._current: dict | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "script":
            self._current = {"attrs": dict(attrs), "text": ""}
            self.scripts.append(self._current)

    def handle_data(self, data):
        if self._current is not None:
            self._current["text"] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._current = None


def scripts(html: str) -> list[dict]:
    parser = ScriptCollector()
    parser.feed(html)
    return parser.scripts


def events(html: str) -> list[dict]:
    """The parameters of every trackEvent push in the markup."""
    found = []
    for script in scripts(html):
        for statement in re.findall(r'window\.raptor&&window\.raptor\.push\("trackEvent",.*?\);(?=window|$)', script["text"]):
            found.append(json.loads(PUSH.match(statement).group(1)))
    return found


# -- exact markup -------------------------------------------------------------------------


def test_head_script_is_the_raptor_queue_stub(site: Flask) -> None:
    assert render(site, "{{ cdp_head_script() }}") == (
        '<script>window.raptor||(window.raptor={q:[{event:"trackevent",params:{p1:"pageview"}}],'
        "push:function(event,params,options){this.q.push({event:event,params:params,options:options})},"
        'customerId:"1234"});</script>'
    )


def test_head_script_takes_another_customer_id(site: Flask) -> None:
    assert 'customerId:"98765"' in render(site, "{{ cdp_head_script('98765') }}")


def test_main_script_waits_for_enable_tracking_without_consent(site: Flask) -> None:
    html = render(site, "{{ cdp_main_script() }}")
    assert html.endswith(
        'if(c){load();}else{d.addEventListener("enableTracking",load);}})'
        '(document,"https://deliver.raptorstatic.com/script/raptor-3.0.min.js",false);</script>'
    )
    assert "if(done)return;done=true;" in html  # loads at most once


def test_main_script_loads_at_once_with_consent(site: Flask) -> None:
    assert render(site, "{{ cdp_main_script(true) }}").endswith('raptor-3.0.min.js",true);</script>')
    assert render(site, "{{ cdp_main_script(false) }}").endswith('raptor-3.0.min.js",false);</script>')


@pytest.mark.parametrize(("cookie", "consented"), [("yes", True), ("1", True), ("TRUE", True), ("no", False), ("", False)])
def test_consent_cookie_decides_by_default(site: Flask, cookie: str, consented: bool) -> None:
    html = render(site, "{{ cdp_main_script() }}", headers={"Cookie": f"consent={cookie}"})
    assert html.endswith(f'",{str(consented).lower()});</script>')


def test_tracking_script_is_head_then_main(site: Flask) -> None:
    html = render(site, "{{ cdp_tracking_script() }}")
    assert html == render(site, "{{ cdp_head_script() }}{{ cdp_main_script() }}")


def test_tracking_script_url_setting_is_used(sqlite_url: str) -> None:
    app = Flask("x")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_ACCOUNT_NUMBER="1234", CDP_TRACKING_SCRIPT_URL="/static/r.js")
    CDP(app)
    assert '(document,"/static/r.js",false)' in render(app, "{{ cdp_main_script() }}")


def test_visit_without_id_uses_the_path(site: Flask) -> None:
    assert render(site, "{{ cdp_track_visit() }}", path="/landing/spring") == (
        '<script>window.raptor&&window.raptor.push("trackEvent",{"p1":"visit","p2":"/landing/spring"});</script>'
    )


def test_visit_with_every_product_field(site: Flask) -> None:
    html = render(
        site,
        "{{ cdp_track_visit('sku-1', name='Cat tree', category_path=[('pets', 'Pets'), ('cats', 'Cats')],"
        " price=price, currency='eur', brand='Purrfect', in_stock=false, master_id='sku', basket_id='b1') }}",
        price=Decimal("89.9"),
    )
    assert events(html) == [
        {"p1": "visit", "p2": "sku-1", "p3": "Cat tree", "p4": "pets#Pets;cats#Cats", "p6": "EUR", "p8": "Purrfect",
         "p11": "b1", "p12": "89.90", "p15": "false", "p18": "sku"}
    ]


def test_buy_sends_one_event_per_line_with_subtotals(site: Flask) -> None:
    lines = [
        {"id": "a", "price": "9.99", "quantity": 3, "name": "Food", "sku": "ignored"},
        SimpleNamespace(id="b", price=5, quantity=1, brand="Woof", subtotal=None),
    ]
    html = render(site, "{{ cdp_track_buy(lines, order_id='o-7', currency='EUR') }}", lines=lines)
    assert events(html) == [
        {"p1": "buy", "p2": "a", "p3": "Food", "p5": "29.97", "p6": "EUR", "p12": "9.99", "p13": "3", "p21": "o-7"},
        {"p1": "buy", "p2": "b", "p5": "5.00", "p6": "EUR", "p8": "Woof", "p12": "5.00", "p13": "1", "p21": "o-7"},
    ]
    assert len(scripts(html)) == 1


@pytest.mark.parametrize(("currency", "price", "expected"), [("JPY", "1200.4", "1200"), ("KWD", "1.5", "1.500"),
                                                            ("EUR", "0.005", "0.01"), (None, 3, "3.00")])
def test_price_uses_the_currencys_decimals(site: Flask, currency, price, expected) -> None:
    html = render(site, "{{ cdp_track_visit('x', price=price, currency=currency) }}", price=price, currency=currency)
    assert events(html)[0]["p12"] == expected


def test_basket_sends_the_whole_basket_even_when_empty(site: Flask) -> None:
    assert events(render(site, "{{ cdp_track_basket('a', ['a', 'b', 7], basket_id='bk') }}")) == [
        {"p1": "basket", "p2": "a", "p10": "a,b,7", "p11": "bk"}
    ]
    assert events(render(site, "{{ cdp_track_basket('a', []) }}"))[0]["p10"] == ""


def test_content_visit(site: Flask) -> None:
    html = render(site, "{{ cdp_track_content_visit('article-9', title='How to; #brush, a cat', category_path=['News', 'Pets']) }}")
    assert events(html) == [{"p1": "contentvisit", "p2": "article-9", "p3": "How to; #brush, a cat", "p4": "News;Pets"}]


def test_category_path_names_lose_separators(site: Flask) -> None:
    html = render(site, "{{ cdp_track_visit('x', category_path=[('a#1', 'Dogs, cats; #fish')]) }}")
    assert events(html)[0]["p4"] == "a1#Dogs cats fish"


def test_any_event_with_raw_parameters(site: Flask) -> None:
    assert events(render(site, "{{ cdp_track_event('search', id='q', p9='cat food') }}")) == [
        {"p1": "search", "p2": "q", "p9": "cat food"}
    ]


def test_tracking_parameters_move_fields_per_event_type(sqlite_url: str) -> None:
    app = Flask("x")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_ACCOUNT_NUMBER="1234",
                      CDP_TRACKING_PARAMETERS={"buy": {"currency": "p9"}, "newsletter": {"id": "p30"}})
    CDP(app)
    buy = events(render(app, "{{ cdp_track_buy([{'id': 'a', 'price': 1, 'quantity': 1}], currency='EUR') }}"))
    assert buy[0]["p9"] == "EUR" and "p6" not in buy[0]
    visit = events(render(app, "{{ cdp_track_visit('a', currency='EUR') }}"))
    assert visit[0]["p6"] == "EUR"
    assert events(render(app, "{{ cdp_track_event('newsletter', id='n1') }}")) == [{"p1": "newsletter", "p30": "n1"}]


# -- the current user ---------------------------------------------------------------------


def test_user_id_loader_feeds_set_user_and_every_event(site: Flask) -> None:
    cdp = cdp_of(site)
    cdp.user_id_loader(lambda: 42)
    html = render(site, "{{ cdp_set_user() }}{{ cdp_track_visit('x') }}")
    assert '<script>window.raptor&&window.raptor.push("setRuid","42");</script>' in html
    assert events(html)[0]["p7"] == "42"


def test_anonymous_visitors_get_no_user_id(site: Flask) -> None:
    cdp_of(site).user_id_loader(lambda: None)
    assert render(site, "{{ cdp_set_user() }}") == ""
    assert "p7" not in events(render(site, "{{ cdp_track_visit('x') }}"))[0]


def test_set_user_with_an_explicit_id(site: Flask) -> None:
    assert 'push("setRuid","u-\\u003c1\\u003e")' in render(site, "{{ cdp_set_user('u-<1>') }}")


def test_flask_login_current_user_is_used(site: Flask) -> None:
    flask_login = pytest.importorskip("flask_login", reason="Flask-Login is an optional integration")
    manager = flask_login.LoginManager(site)

    class User(flask_login.UserMixin):
        id = "77"

    manager.request_loader(lambda request: User() if request.headers.get("X-User") else None)
    assert '"setRuid","77"' in render(site, "{{ cdp_set_user() }}", headers={"X-User": "1"})
    assert "setRuid" not in render(site, "{{ cdp_set_user() }}")


def test_in_segment_and_user_segments_for_templates(site: Flask) -> None:
    state = site.extensions["cdp"]
    with site.app_context():
        state.create_tables()
        state.store.create_group("g")
        state.store.add_members("g", "vip", ["42"], name="VIP")
    cdp_of(site).user_id_loader(lambda: 42)
    html = render(site, "{% if cdp_in_segment('VIP') %}vip{% endif %}|{{ cdp_user_segments() | map(attribute='name') | join(',') }}"
                        "|{{ cdp_in_segment('VIP', user_id='7') }}")
    assert html == "vip|VIP|False"
    cdp_of(site).user_id_loader(lambda: None)
    assert render(site, "{{ cdp_in_segment('VIP') }}|{{ cdp_user_segments() }}") == "False|[]"


# -- nonces -----------------------------------------------------------------------------------


def test_nonce_argument_is_put_on_every_script(site: Flask) -> None:
    html = render(site, "{{ cdp_tracking_script(nonce='r4nd0m==') }}{{ cdp_track_visit('x', nonce='r4nd0m==') }}")
    assert [s["attrs"].get("nonce") for s in scripts(html)] == ["r4nd0m=="] * 3


def test_nonce_provider_is_used_when_registered(site: Flask) -> None:
    cdp_of(site).nonce_provider(lambda: "fromprovider")
    assert scripts(render(site, "{{ cdp_head_script() }}"))[0]["attrs"]["nonce"] == "fromprovider"


def test_talismans_request_nonce_is_used(site: Flask) -> None:
    @site.before_request
    def set_nonce():
        from flask import request

        request.csp_nonce = "talisman123"

    with site.test_request_context("/"):
        site.preprocess_request()
        assert 'nonce="talisman123"' in render_template_string("{{ cdp_head_script() }}")


def test_nonce_that_could_break_the_attribute_is_refused(site: Flask) -> None:
    site.debug = True
    with pytest.raises(TrackingArgumentError, match="nonce"):
        render(site, """{{ cdp_head_script(nonce='x" onload="alert(1)') }}""")


# -- unconfigured and bad arguments ---------------------------------------------------------


def test_without_account_number_nothing_is_rendered_and_one_warning_logged(sqlite_url: str, caplog) -> None:
    app = Flask("x")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url)
    CDP(app)
    with caplog.at_level(logging.WARNING, logger="cdp_bridge.tracking"):
        assert render(app, "{{ cdp_tracking_script() }}{{ cdp_track_visit() }}{{ cdp_set_user('1') }}") == ""
        render(app, "{{ cdp_track_visit() }}")
    messages = [r.getMessage() for r in caplog.records if r.name == "cdp_bridge.tracking"]
    assert messages == ["CDP_ACCOUNT_NUMBER is not set: tracking helpers render nothing"]


BAD_ARGUMENTS = [
    ("{{ cdp_track_buy([{'price': 1, 'quantity': 1}]) }}", "lines[0].id is required"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': 1, 'quantity': -1}]) }}", "lines[0]: quantity must be a whole number >= 0"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': 'cheap', 'quantity': 1}]) }}", "lines[0]: price must be a number"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': '-2', 'quantity': 1}]) }}", "price must be a finite amount >= 0"),
    ("{{ cdp_track_buy('a,b') }}", "lines must be a list"),
    ("{{ cdp_track_event('teleport') }}", "event_type 'teleport' is not a known event type"),
    ("{{ cdp_track_visit('x', colour='red') }}", "colour is not a tracking field"),
    ("{{ cdp_track_visit('x', currency='euro') }}", "currency must be a three-letter ISO code"),
    ("{{ cdp_track_visit('x', in_stock='yes') }}", "in_stock must be true or false"),
    ("{{ cdp_track_visit('x', quantity=1.5) }}", "quantity must be a whole number"),
    ("{{ cdp_track_visit('x', name=none_value or {}) }}", "name must be text or a number"),
    ("{{ cdp_track_visit('bell\x07') }}", "id must not contain control characters"),
    ("{{ cdp_track_visit('x', category_path=5) }}", "category_path must be a list"),
    ("{{ cdp_track_basket(none_value, []) }}", "id is required"),
    ("{{ cdp_track_basket('a', none_value) }}", "basket_content is required"),
    ("{{ cdp_main_script('yes') }}", "has_consented must be true, false or None"),
    ("{{ cdp_set_user('') }}", "user_id: user id must not be empty"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': snan, 'quantity': 1}]) }}", "price must be a finite amount >= 0"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': nan, 'quantity': 2}]) }}", "price must be a finite amount >= 0"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': infinity, 'quantity': 1}]) }}", "price must be a finite amount >= 0"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': 1, 'quantity': 1, 'subtotal': snan}]) }}", "subtotal must be a finite"),
    ("{{ cdp_track_visit('x', price=snan) }}", "price must be a finite amount >= 0"),
    # amounts beyond Decimal's precision made quantize raise InvalidOperation: a 500
    ("{{ cdp_track_buy([{'id': 'a', 'price': big_decimal, 'quantity': 1}]) }}", "price must be below 10^18"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': 1e30, 'quantity': 1}]) }}", "price must be below 10^18"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': '1e999', 'quantity': 1}]) }}", "price must be below 10^18"),
    ("{{ cdp_track_event('buy', id='a', price='1e999') }}", "price must be below 10^18"),
    ("{{ cdp_track_event('buy', id='a', price=big_decimal) }}", "price must be below 10^18"),
    ("{{ cdp_track_event('buy', id='a', subtotal=1e30) }}", "subtotal must be below 10^18"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': 999999999999999, 'quantity': 1000000}]) }}", "subtotal must be below 10^18"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': 1, 'quantity': huge_int}]) }}", "quantity must be a whole number >= 0 and below 10^18"),
    ("{{ cdp_track_buy([{'id': 'a', 'price': huge_int, 'quantity': 1}]) }}", "price must be below 10^18, not a number of 16610 bits"),
]

#: What the bad-argument templates may use besides literals.
BAD_VALUES = {"none_value": None, "snan": Decimal("sNaN"), "nan": Decimal("NaN"), "infinity": float("inf"),
              "big_decimal": Decimal("1e26"), "huge_int": 10**5000}


@pytest.mark.parametrize(("template", "message"), BAD_ARGUMENTS)
def test_bad_argument_raises_naming_it_in_debug(site: Flask, template: str, message: str) -> None:
    site.debug = True
    with pytest.raises(TrackingArgumentError) as caught:
        render(site, template, **BAD_VALUES)
    assert message in str(caught.value)


@pytest.mark.parametrize(("template", "message"), BAD_ARGUMENTS)
def test_bad_argument_renders_nothing_and_logs_in_production(site: Flask, template: str, message: str, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="cdp_bridge.tracking"):
        assert render(site, f"before{template}after", **BAD_VALUES) == "beforeafter"
    errors = [r for r in caplog.records if r.name == "cdp_bridge.tracking" and r.levelno >= logging.ERROR]
    assert len(errors) == 1 and message in errors[0].getMessage()


def test_an_integral_decimal_quantity_is_a_whole_number(site: Flask) -> None:
    """A buy line from a SQL NUMERIC column carries Decimal('1'): it rendered nothing."""
    html = render(site, "{{ cdp_track_buy([{'id': 'a', 'price': price, 'quantity': one}, {'id': 'b', 'price': 2, "
                        "'quantity': ten}]) }}", price=Decimal("9.99"), one=Decimal("1"), ten=Decimal("1E+1"))
    assert [(e["p2"], e["p13"], e["p5"]) for e in events(html)] == [("a", "1", "9.99"), ("b", "10", "20.00")]


@pytest.mark.slow
def test_any_price_or_quantity_renders_or_is_refused_by_name(site: Flask) -> None:
    """Prices and quantities from 1e-30 to 1e999, as Decimal, float and str: a helper
    renders its events or, in production, nothing and one error; never a 500."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    magnitudes = st.tuples(st.integers(-30, 999), st.integers(1, 9)).map(lambda pair: f"{pair[1]}e{pair[0]}")
    numbers = st.one_of(magnitudes, magnitudes.map(Decimal), magnitudes.map(float), st.integers(0, 10**30))

    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(price=numbers, quantity=numbers)
    def helper(price, quantity) -> None:
        html = render(site, "<p>{{ cdp_track_buy([{'id': 'a', 'price': price, 'quantity': quantity}]) }}"
                            "{{ cdp_track_event('buy', id='b', price=price) }}</p>", price=price, quantity=quantity)
        assert html.startswith("<p>") and html.endswith("</p>")

    helper()


# -- hostile strings ------------------------------------------------------------------------

HOSTILE = [
    "</script><script>window.pwned=1</script>",
    "</SCRIPT ><img src=x onerror=window.pwned=1>",
    "<!--",
    "<!-- <script>",
    "-->",
    "]]>",
    "\u2028\u2029",
    '"',
    "'",
    '";window.pwned=1;//',
    "';window.pwned=1;//",
    "\\",
    '\\";window.pwned=1;//',
    "${window.pwned=1}",
    "`${alert(1)}`",
    "{{ 7*7 }}",
    "&lt;script&gt;",
    "&#x3C;/script&#x3E;",
    "Zoë 🐈 用户 \u202a",
    "\ufeffbom \u200d👨\u200d👩\u200d👧",
    "x" * 4000,
    "<svg/onload=window.pwned=1>",
    "javascript:window.pwned=1",
]


@pytest.mark.parametrize("hostile", HOSTILE, ids=[f"h{i}" for i in range(len(HOSTILE))])
def test_hostile_strings_stay_inside_their_script_and_arrive_exactly(site: Flask, hostile: str) -> None:
    # A user id may not hold line separators or format characters; any other hostile text may.
    user_id = hostile[:255] if text_problem(hostile[:255], max_length=255) is None else "</script><!--"
    cdp_of(site).user_id_loader(lambda: user_id)
    html = render(
        site,
        "{{ cdp_track_visit(s, name=s, category_path=[(s, s)], brand=s, master_id=s, basket_id=s, p9=s) }}"
        "{{ cdp_track_buy([{'id': s, 'price': 1, 'quantity': 1, 'name': s}], order_id=s) }}"
        "{{ cdp_track_basket(s, [s]) }}{{ cdp_track_content_visit(s, title=s) }}{{ cdp_set_user() }}"
        "{{ cdp_head_script(customer_id=s) }}",
        s=hostile,
    )
    parsed = scripts(html)
    assert len(parsed) == 6  # nothing closed a script early or opened another
    for script in parsed:
        assert "</script" not in script["text"].lower() and "<!--" not in script["text"]
        assert "\u2028" not in script["text"] and "\u2029" not in script["text"]
    sent = events(html)
    visit, buy, basket, content = sent
    cleaned = hostile.replace(",", "").replace(";", "").replace("#", "")
    assert visit["p2"] == visit["p3"] == visit["p8"] == visit["p9"] == visit["p11"] == visit["p18"] == hostile
    assert visit["p4"] == f"{cleaned}#{cleaned}"
    assert visit["p7"] == user_id
    assert buy["p2"] == buy["p3"] == buy["p21"] == hostile
    assert basket["p2"] == hostile and basket["p10"] == hostile.replace(",", "")
    assert content["p2"] == content["p3"] == hostile
    set_user = json.loads(re.search(r'push\("setRuid",(.*)\);', parsed[4]["text"]).group(1))
    assert set_user == user_id
    customer = json.loads(re.search(r"customerId:(.*)\}\);$", parsed[5]["text"]).group(1))
    assert customer == hostile


def test_flask_talismans_nonce_matches_the_csp_header(site: Flask) -> None:
    from flask_talisman import Talisman

    Talisman(site, force_https=False, content_security_policy={"script-src": "'self'"},
             content_security_policy_nonce_in=["script-src"])
    site.add_url_rule("/page", "page", lambda: render_template_string("{{ cdp_tracking_script() }}{{ cdp_track_visit() }}"))
    response = site.test_client().get("/page")
    header_nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    nonces = [s["attrs"].get("nonce") for s in scripts(response.get_data(as_text=True))]
    assert nonces == [header_nonce] * 3


def test_a_pages_answers_are_asked_once_and_asked_again_once_forgotten(site: Flask) -> None:
    """The page's per-request answers (here the host's consent loader) are worked out on
    their first read and kept for the request; ``forget_visitor`` drops them, and the next
    read works them out again (now: no consent, without asking the loader)."""
    from cdp_bridge.templating.page import current_page

    asked: list[bool] = []
    cdp_of(site).consent_loader(lambda: asked.append(True) or True)
    template = "{{ cdp_tracking_script() }}{{ cdp_track_visit('x') }}{{ cdp_track_visit('y') }}"
    with site.test_request_context("/"):
        page = current_page()
        assert "trackEvent" in render_template_string(template)
        assert page.consented is True and page.tracking_ids is not None and asked == [True]
        page.forget_visitor()
        assert page.consented is False and page.tracking_ids is None and asked == [True]
    with site.test_request_context("/"):
        assert current_page().consented is True and asked == [True, True]  # a new request asks again
