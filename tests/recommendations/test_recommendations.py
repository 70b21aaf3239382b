"""Raptor's recommendation blocks (SPEC section 11), against a local fake of the
Recommendations API (a real HTTP server on loopback), never a patched function."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, render_template_string
from freezegun import freeze_time

from cdp_bridge import CDP, ConfigurationError
from cdp_bridge.errors import RecommendationArgumentError
from cdp_bridge.metrics import REGISTRY
from cdp_bridge.recommendations import parse_recommendations
from tests.support.fake_membership_api import Reply
from tests.support.fake_recommendations_api import FakeRecommendationsAPI, recommended
from tests.support.logs import KNOWN_SECRETS
from tests.support.loopback import Listener
from tests.support.webhook import cdp_of

API_KEY = "recs-key/with?odd&chars-4f1e"
KNOWN_SECRETS.add(API_KEY)
VISITOR = "0b6f7c2e-5a3d-4e1f-9c8b-7a6d5e4f3a2b"
MODULES = {
    "also": {"method": "GetSimilarItemsWeb", "kind": "product", "count": 4, "parameters": {"itemId": "product_id"}},
    "personal": {"method": "GetUserItemRecommendationsWeb", "kind": "product", "count": 3,
                 "parameters": {"UserIdentifier": "visitor"}},
    "history": {"method": "GetUserItemHistoryWeb", "kind": "product", "count": 5, "parameters": {"UserId": "user"}},
    "popular": {"method": "GetPopularContentWeb", "kind": "content", "count": 2, "parameters": {}},
}
PRODUCTS = {f"sku-{n}": {"id": f"sku-{n}", "name": f"Product {n}"} for n in range(1, 10)}
BLOCK = ("{% for p in cdp_recommendations(name, **args) %}{{ p.name }};{% else %}our best sellers{% endfor %}")


@pytest.fixture
def api() -> Iterator[FakeRecommendationsAPI]:
    fake = FakeRecommendationsAPI()
    yield fake
    fake.close()


@pytest.fixture
def make_site(tmp_path: Path, api: FakeRecommendationsAPI):
    def make(**config: Any) -> Flask:
        app = Flask("recommending_site", instance_path=str(tmp_path / "instance"))
        app.config.update(TESTING=True, SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/site.sqlite3",
                          CDP_ACCOUNT_NUMBER="123456", CDP_CONSENT_COOKIE="consent", CDP_INLINE_WORKER=False,
                          CDP_RECOMMENDATIONS_API_URL=api.url, CDP_RECOMMENDATIONS_API_KEY=API_KEY,
                          CDP_RECOMMENDATIONS_TIMEOUT=0.5, CDP_RECOMMENDATION_MODULES=json.dumps(MODULES))
        app.config.update(config)
        cdp = CDP(app)
        app.loader_calls = []  # type: ignore[attr-defined]

        @cdp.recommendation_loader("product")
        def products(ids: list[str]) -> dict[str, Any]:
            app.loader_calls.append(list(ids))  # type: ignore[attr-defined]
            return {item_id: PRODUCTS[item_id] for item_id in ids if item_id in PRODUCTS}

        @cdp.recommendation_loader("content")
        def articles(ids: list[str]) -> list[dict[str, Any]]:
            return [{"id": int(item_id), "name": f"Article {item_id}"} for item_id in ids if item_id.isdigit()]

        @app.get("/block/<name>")
        def block(name: str) -> str:
            from flask import request

            args = {key: value for key, value in request.args.items()}
            return render_template_string(BLOCK, name=name, args=args)

        return app

    return make


def visit(app: Flask, path: str, *, consent: bool = True, visitor: str | None = VISITOR) -> str:
    client = app.test_client()
    if consent:
        client.set_cookie("consent", "1")
    if visitor:
        client.set_cookie("rsa", visitor)
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_the_request_is_raptors_url_shape_with_the_key_in_the_path(make_site, api: FakeRecommendationsAPI) -> None:
    app = make_site()
    assert visit(app, "/block/also?product_id=sku 7/x") == "Product 1;Product 2;Product 3;"
    (asked,) = api.asked
    assert (asked.account, asked.method, asked.count, asked.key) == ("123456", "GetSimilarItemsWeb", "4", API_KEY)
    assert asked.path == "/v1/123456/GetSimilarItemsWeb/4/recs-key%2Fwith%3Fodd%26chars-4f1e"
    assert asked.query == {"itemId": "sku 7/x", "json": "True"}


def test_records_keep_raptors_order_skip_unknown_ids_and_variants_are_one_product(make_site,
                                                                                   api: FakeRecommendationsAPI) -> None:
    api.default = recommended("sku-3_red", "gone", "sku-1", "sku-3_blue", "sku-2")
    app = make_site()
    assert visit(app, "/block/also?product_id=sku-9") == "Product 3;Product 1;Product 2;"
    assert app.loader_calls == [["sku-3", "gone", "sku-1", "sku-2"]]  # type: ignore[attr-defined]


def test_one_loader_call_and_one_api_call_per_page_and_module(make_site, api: FakeRecommendationsAPI) -> None:
    app = make_site(CDP_RECOMMENDATIONS_CACHE_TTL=0)
    page = "{{ cdp_recommendations('also', product_id='sku-1')|length }}" * 3
    with app.test_request_context("/"):
        assert render_template_string(page) == "333"
    assert len(api.asked) == 1 and len(app.loader_calls) == 1  # type: ignore[attr-defined]


def test_a_content_loader_may_return_a_list_of_records_with_ids(make_site, api: FakeRecommendationsAPI) -> None:
    api.replies["GetPopularContentWeb"] = recommended("12", "13", "x")
    app = make_site()
    assert visit(app, "/block/popular") == "Article 12;Article 13;"


def test_a_loader_may_key_its_records_by_numbers(make_site, api: FakeRecommendationsAPI) -> None:
    """A mapping keyed by the ids as numbers (a database's primary keys) is read by their
    text, in Raptor's order; an id it does not hold is skipped."""
    app = make_site(CDP_RECOMMENDATIONS_CACHE_TTL=0)

    @cdp_of(app).recommendation_loader("content")
    def articles(ids: list[str]) -> dict[int, Any]:
        return {int(item_id): {"name": f"Article {item_id}"} for item_id in ids if item_id != "404"}

    api.replies["GetPopularContentWeb"] = recommended("13", "12")
    assert visit(app, "/block/popular") == "Article 13;Article 12;"
    api.replies["GetPopularContentWeb"] = recommended("404", "12")
    assert visit(app, "/block/popular") == "Article 12;"


def test_consent_rules_which_modules_are_called(make_site, api: FakeRecommendationsAPI) -> None:
    """Without consent no visitor module is called (the fallback renders); modules that
    need no visitor still are; a user module needs a logged-in user."""
    app = make_site()
    assert visit(app, "/block/personal", consent=False) == "our best sellers"
    assert visit(app, "/block/personal", visitor=None) == "our best sellers"
    assert visit(app, "/block/personal", visitor="not-a-uuid") == "our best sellers"
    assert api.asked == []
    assert visit(app, "/block/also?product_id=sku-1", consent=False).startswith("Product 1")
    assert visit(app, "/block/history") == "our best sellers"  # nobody logged in
    assert [asked.method for asked in api.asked] == ["GetSimilarItemsWeb"]
    assert visit(app, "/block/personal") == "Product 1;Product 2;Product 3;"
    assert api.asked[-1].query == {"UserIdentifier": VISITOR, "json": "True"}
    cdp_of(app).user_id_loader(lambda: "user-42")
    visit(app, "/block/history")
    assert api.asked[-1].query == {"UserId": "user-42", "json": "True"}


ANSWERS = [
    pytest.param(Reply(body=b"[]"), "our best sellers", False, id="empty"),
    pytest.param(Reply(body=b'[{"RecommendedId": '), "our best sellers", True, id="malformed"),
    pytest.param(Reply(body=b'{"RecommendedId": "sku-1"}'), "our best sellers", True, id="not an array"),
    pytest.param(Reply(body=b"[" + b"[" * 100_000 + b"]" * 100_001), "our best sellers", True, id="deep"),
    pytest.param(Reply(body=b"[" + b'{"RecommendedId": "sku-1"},' * 60_000 + b"{}]"), "our best sellers", True,
                 id="huge"),
    pytest.param(Reply(body=b'[{"RecommendedId": "sku-1"}]', delay=1.0), "our best sellers", True, id="slow"),
    pytest.param(Reply(body=b'[{"RecommendedId": "sku-1"}]' + b" " * 40, drip=0.05), "our best sellers", True,
                 id="drip-fed"),
    pytest.param(Reply(status=401, body=b"{}"), "our best sellers", True, id="401"),
    pytest.param(Reply(status=403, body=b"{}"), "our best sellers", True, id="403"),
    pytest.param(Reply(status=404, body=b"{}"), "our best sellers", True, id="404"),
    pytest.param(Reply(status=503, body=b"{}"), "our best sellers", True, id="5xx"),
    pytest.param(Reply(status=302, body=b"", headers={"Location": "http://127.0.0.2:9/steal"}), "our best sellers",
                 True, id="redirect elsewhere"),
    pytest.param(Reply(body=b'[{"RecommendedId": "sku-2", "Priority": "high", "Extra": 1}, 7, {"RecommendedId": ""},'
                        b' {"RecommendedId": "a\\u0000b"}, {"RecommendedId": 1234}]'), "Product 2;", False,
                 id="tolerant"),
]


@pytest.mark.parametrize(("reply", "page", "failure"), ANSWERS)
def test_every_answer_leaves_the_page_rendering(make_site, api: FakeRecommendationsAPI, caplog, reply: Reply,
                                                page: str, failure: bool) -> None:
    api.default = reply
    app = make_site()
    with caplog.at_level(logging.DEBUG):
        assert visit(app, "/block/also?product_id=sku-1") == page
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("cdp_bridge")]
    if failure:
        assert len(warnings) == 1 and "recommendations: the Recommendations API failed" in warnings[0].getMessage()
    for record in caplog.records:
        assert API_KEY not in record.getMessage() and "recs-key%2F" not in record.getMessage()


def test_the_redirect_is_never_followed(make_site, api: FakeRecommendationsAPI) -> None:
    other_host = Listener("127.0.0.2")
    try:
        api.default = Reply(status=307, body=b"", headers={"Location": f"{other_host.url}/steal"})
        assert visit(make_site(), "/block/also?product_id=sku-1") == "our best sellers"
        assert other_host.requests == []
    finally:
        other_host.close()


def test_the_cache_keeps_an_answer_for_its_ttl(make_site, api: FakeRecommendationsAPI) -> None:
    with freeze_time("2026-12-04 10:00:00") as clock:
        app = make_site(CDP_RECOMMENDATIONS_CACHE_TTL=60)
        for _ in range(3):
            visit(app, "/block/also?product_id=sku-1")
        visit(app, "/block/also?product_id=sku-2")  # other parameters: another key
        assert len(api.asked) == 2
        clock.tick(timedelta(seconds=59))
        visit(app, "/block/also?product_id=sku-1")
        assert len(api.asked) == 2
        clock.tick(timedelta(seconds=2))
        visit(app, "/block/also?product_id=sku-1")
        assert len(api.asked) == 3


def test_eight_concurrent_requests_make_one_call(make_site, api: FakeRecommendationsAPI) -> None:
    api.default = Reply(body=recommended("sku-1").body, delay=0.3)
    app = make_site()
    pages: list[str] = []
    threads = [threading.Thread(target=lambda: pages.append(visit(app, "/block/also?product_id=sku-5"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pages == ["Product 1;"] * 8
    assert len(api.asked) == 1


def test_the_breaker_opens_then_closes(make_site, api: FakeRecommendationsAPI, caplog) -> None:
    api.default = Reply(status=503, body=b"{}")
    with freeze_time("2026-12-04 10:00:00") as clock, caplog.at_level(logging.INFO, logger="cdp_bridge.recommendations"):
        app = make_site(CDP_RECOMMENDATIONS_CACHE_TTL=0)
        for n in range(6):
            assert visit(app, f"/block/also?product_id=sku-{n}") == "our best sellers"
        assert len(api.asked) == 3  # three failures, then the calls pause
        assert REGISTRY.get_sample_value("cdp_breaker_open", {"client": "recommendations"}) == 1
        clock.tick(timedelta(seconds=31))
        api.default = recommended("sku-1")
        assert visit(app, "/block/also?product_id=sku-1") == "Product 1;"
        assert REGISTRY.get_sample_value("cdp_breaker_open", {"client": "recommendations"}) == 0
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    assert "the Recommendations API answers again (after 3 failed calls)" in caplog.text


def test_calls_are_counted_by_outcome(make_site, api: FakeRecommendationsAPI) -> None:
    def calls(outcome: str) -> float:
        return REGISTRY.get_sample_value("cdp_recommendations_api_calls_total", {"outcome": outcome}) or 0.0

    before = calls("ok"), calls("unauthorized")
    app = make_site(CDP_RECOMMENDATIONS_CACHE_TTL=0)
    visit(app, "/block/also?product_id=sku-1")
    api.default = Reply(status=401, body=b"{}")
    visit(app, "/block/also?product_id=sku-1")
    assert (calls("ok") - before[0], calls("unauthorized") - before[1]) == (1, 1)


def test_the_key_never_shows_in_a_log_line_a_repr_or_an_error(make_site, api: FakeRecommendationsAPI, caplog) -> None:
    app = make_site(CDP_RECOMMENDATIONS_CACHE_TTL=0)
    with caplog.at_level(logging.DEBUG):
        visit(app, "/block/also?product_id=sku-1")
        api.default = Reply(body=json.dumps([{"RecommendedId": "sku-1", "echo": API_KEY}]).encode())
        visit(app, "/block/also?product_id=sku-2")
        api.default = Reply(status=500, body=API_KEY.encode())
        visit(app, "/block/also?product_id=sku-3")
    assert any("GetSimilarItemsWeb/4/[key]" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert API_KEY not in record.getMessage() and "recs-key" not in record.getMessage(), record.getMessage()
    client = app.extensions["cdp"].recommendations.client
    assert API_KEY not in repr(client) and "recs-key" not in repr(app.extensions["cdp"].settings)


def test_a_bad_argument_renders_nothing_and_logs_one_error(make_site, api: FakeRecommendationsAPI, caplog) -> None:
    app = make_site()
    with app.test_request_context("/"), caplog.at_level(logging.ERROR):
        for template in ["{{ cdp_recommendations('nope')|length }}", "{{ cdp_recommendations('also', count=0)|length }}",
                         "{{ cdp_recommendations('also')|length }}",
                         "{{ cdp_recommendations('also', product_id='a\\x00b')|length }}",
                         "{{ cdp_recommendations('also', colour='red')|length }}"]:
            assert render_template_string(template) == "0"
    assert len([r for r in caplog.records if r.name == "cdp_bridge.recommendations"]) == 5
    assert api.asked == []
    app.debug = True
    with app.test_request_context("/"), pytest.raises(RecommendationArgumentError, match="no module named 'nope'"):
        render_template_string("{{ cdp_recommendations('nope') }}")


def test_a_kind_without_a_loader_is_named(make_site, api: FakeRecommendationsAPI) -> None:
    modules = {**MODULES, "shop": {"method": "GetPopularItemsWeb", "kind": "bundle", "parameters": {}}}
    app = make_site(CDP_RECOMMENDATION_MODULES=json.dumps(modules))
    with app.test_request_context("/"), pytest.raises(RecommendationArgumentError,
                                                      match=r"no @cdp.recommendation_loader\('bundle'\)"):
        cdp_of(app).recommendations("shop")


def test_recommendations_from_python_outside_a_request(make_site, api: FakeRecommendationsAPI) -> None:
    app = make_site()
    with app.app_context():
        cdp = cdp_of(app)
        # Raptor answers three for a count of two: the block shows two.
        assert [p["id"] for p in cdp.recommendations("personal", visitor_id=VISITOR, count=2)] == ["sku-1", "sku-2"]
        assert cdp.recommendations("personal") == []  # nobody to recommend for: no call
    assert [(a.count, a.query) for a in api.asked] == [("2", {"UserIdentifier": VISITOR, "json": "True"})]


@pytest.mark.parametrize(("config", "message"), [
    ({"CDP_RECOMMENDATION_MODULES": '{"x": {"method": "Get/x", "kind": "product"}}'},
     "CDP_RECOMMENDATION_MODULES.x.method: expected a Raptor method name"),
    ({"CDP_RECOMMENDATION_MODULES": '{"x": {"method": "GetX", "kind": "product", "parameters": {"a": "cookie"}}}'},
     "CDP_RECOMMENDATION_MODULES.x.parameters.a: expected one of visitor, user"),
    ({"CDP_RECOMMENDATION_MODULES": '{"x": {"method": "GetX", "kind": "product", "count": 0}}'},
     "CDP_RECOMMENDATION_MODULES.x.count: expected a whole number from 1 to 100"),
    ({"CDP_RECOMMENDATION_MODULES": '{"x": {"method": "GetX", "kind": "product", "colour": 1}}'},
     "CDP_RECOMMENDATION_MODULES.x.colour: Unknown field"),
    ({"CDP_RECOMMENDATION_MODULES": "[1]"}, "CDP_RECOMMENDATION_MODULES: expected a mapping"),
    ({"CDP_RECOMMENDATIONS_API_KEY": None}, "CDP_RECOMMENDATIONS_API_KEY: required with CDP_RECOMMENDATION_MODULES"),
    ({"CDP_RECOMMENDATIONS_TIMEOUT": "nan"}, "CDP_RECOMMENDATIONS_TIMEOUT: expected seconds"),
], ids=["method", "source", "count", "unknown key", "not a mapping", "no key", "timeout"])
def test_a_bad_module_is_refused_at_start_naming_it(make_site, config: dict, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make_site(**config)


def test_the_answer_reader_splits_product_variants_only() -> None:
    body = b'[{"RecommendedId": "sku_1_red", "Priority": 2, "CreateDate": "2026-12-01"}, {"RecommendedId": "_x"}]'
    products = parse_recommendations(body, split_variants=True)
    assert [(r.id, r.variant, r.priority, r.created) for r in products] == [("sku_1", "red", 2.0, "2026-12-01"),
                                                                              ("_x", None, None, None)]
    assert [r.id for r in parse_recommendations(body, split_variants=False)] == ["sku_1_red", "_x"]


def test_check_calls_each_module_once_and_reports_the_outcome(make_site, api: FakeRecommendationsAPI) -> None:
    api.replies["GetUserItemHistoryWeb"] = Reply(status=401, body=b"{}")
    api.replies["GetPopularContentWeb"] = Reply(body=b"<html>")
    app = make_site()
    result = app.test_cli_runner().invoke(args=["cdp", "check"])
    lines = result.output.splitlines()
    assert "ok    recommendations 'also': GetSimilarItemsWeb answered at" in result.output
    assert any(line.startswith("FAIL  recommendations 'history': the Recommendations API refused the key (401)")
               and "check CDP_RECOMMENDATIONS_API_KEY" in line for line in lines)
    assert any(line.startswith("FAIL  recommendations 'popular': not JSON") for line in lines)
    assert "/v1/123456/GetSimilarItemsWeb/1/[key]" in result.output and API_KEY not in result.output
    assert sorted(asked.method for asked in api.asked) == sorted(module["method"] for module in MODULES.values())
    assert {asked.count for asked in api.asked} == {"1"}
    assert result.exit_code == 1


def test_check_reports_an_unreachable_api(make_site, api: FakeRecommendationsAPI) -> None:
    app = make_site(CDP_RECOMMENDATIONS_API_URL="http://127.0.0.1:9")
    result = app.test_cli_runner().invoke(args=["cdp", "check"])
    assert "FAIL  recommendations 'also': could not connect" in result.output
    assert "check CDP_RECOMMENDATIONS_API_URL and the network" in result.output


def test_an_answer_longer_than_the_count_is_cut_before_the_loader(make_site, api: FakeRecommendationsAPI) -> None:
    """Raptor asked for 3 answers 20,000: the block shows 3, and the loader is asked for 3."""
    api.default = recommended("sku-1", "sku-2", "sku-3", "sku-4", *(f"z{n}" for n in range(20_000)))
    app = make_site()
    assert visit(app, "/block/personal") == "Product 1;Product 2;Product 3;"
    assert app.loader_calls == [["sku-1", "sku-2", "sku-3"]]  # type: ignore[attr-defined]


def test_a_product_variants_count_as_one_item_when_cutting(make_site, api: FakeRecommendationsAPI) -> None:
    api.default = recommended("sku-1_red", "sku-1_blue", "sku-2", "sku-3_s", "sku-3_m", "sku-4", "sku-5")
    app = make_site()
    assert visit(app, "/block/personal") == "Product 1;Product 2;Product 3;"
    assert app.loader_calls == [["sku-1", "sku-2", "sku-3"]]  # type: ignore[attr-defined]


def test_a_personal_block_says_the_page_varies_by_cookie(make_site, api: FakeRecommendationsAPI) -> None:
    app = make_site()
    client = app.test_client()
    client.set_cookie("consent", "1")
    client.set_cookie("rsa", VISITOR)
    assert client.get("/block/personal").headers["Vary"] == "Cookie"


def test_a_template_that_calls_a_missing_module_logs_one_error_per_process_and_module(make_site, api, caplog) -> None:
    app = make_site()
    with caplog.at_level(logging.ERROR, logger="cdp_bridge.recommendations"):
        pages = [visit(app, f"/block/{name}") for name in ("nope", "nope", "nope", "other", "other")]
    assert pages == ["our best sellers"] * 5
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "cdp_recommendations('nope'): no records: no module named 'nope' in CDP_RECOMMENDATION_MODULES (also, history,"
        " personal, popular) (logged once per process)",
        "cdp_recommendations('other'): no records: no module named 'other' in CDP_RECOMMENDATION_MODULES (also, history,"
        " personal, popular) (logged once per process)"]


def test_a_blocks_checked_arguments_are_kept_by_their_text_and_type(make_site, api: FakeRecommendationsAPI,
                                                                    caplog) -> None:
    """A block's arguments are checked once and kept by what was passed (the next page
    with the same ones reads the kept call); values equal across types are not one
    entry: a count of True after a count of 1 is still refused, a product id of 7 is
    asked as ``7``."""
    app = make_site()
    kept = app.extensions["cdp"].recommendations.checked_calls
    page = "{{ cdp_recommendations('also', count=1, product_id='sku-7')|map(attribute='name')|join(',') }}"
    with app.test_request_context("/"):
        assert render_template_string(page) == "Product 1"
    assert list(kept) == [("also", 1, (("product_id", "sku-7"),))]
    with app.test_request_context("/"), caplog.at_level(logging.ERROR):
        assert render_template_string(page) == "Product 1"  # the kept call
        assert render_template_string("{{ cdp_recommendations('also', count=True, product_id='sku-7')|length }}") == "0"
        assert render_template_string("{{ cdp_recommendations('also', count=1, product_id=7)|length }}") == "1"
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "count must be a whole number from 1 to 100, not True" in errors[0]
    assert [asked.query["itemId"] for asked in api.asked] == ["sku-7", "7"]
    assert len(kept) == 1  # only plain text (and a whole number) is kept


def test_the_kept_calls_are_bounded_and_never_a_viewers(make_site, api: FakeRecommendationsAPI,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the bound the kept calls start again (pages still right); a module that reads
    the visitor or the user is checked on every page, each viewer asked for their own."""
    monkeypatch.setattr("cdp_bridge.templating.recommendations.RECOMMENDATION_CALLS_KEPT", 3)
    app = make_site()
    kept = app.extensions["cdp"].recommendations.checked_calls
    for n in range(1, 8):
        assert visit(app, f"/block/also?product_id=sku-{n}") == "Product 1;Product 2;Product 3;"
        assert 1 <= len(kept) <= 3
    assert [asked.query["itemId"] for asked in api.asked] == [f"sku-{n}" for n in range(1, 8)]
    other = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
    assert visit(app, "/block/personal") == visit(app, "/block/personal", visitor=other) == "Product 1;Product 2;Product 3;"
    assert [asked.query["UserIdentifier"] for asked in api.asked[7:]] == [VISITOR, other]
    assert all(call[0].name == "also" for call in kept.values())
