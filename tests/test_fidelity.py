"""What Ibexa's and Raptor's own instructions expect: the seed's configuration works, and
the export sends JSON types, absences and streams the way Ibexa does (checked byte for
byte against the local fake Streaming API)."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from types import SimpleNamespace

import pytest
from flask import Flask, render_template_string

from cdp_bridge import CDP
from cdp_bridge.errors import ConfigurationError
from cdp_bridge.model import Clock
from cdp_bridge.settings import load_settings
from tests.support.fake_stream_api import FakeStreamAPI
from tests.support.webhook import basic_auth, cdp_of

#: The values of Ibexa's recipe ibexa/cdp/5.0/config/packages/ibexa_cdp.yaml.
SEED_ACCOUNT = "123456"
SEED_STREAM_ID = "00000000-00000000-00000000-00000000"
SEED_GROUP = "example_segment_group_identifier"


def site(sqlite_url: str, api: FakeStreamAPI, **config) -> Flask:
    app = Flask("fidelity_site")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_INLINE_WORKER=False, CDP_STREAM_API_URL=api.url,
                      CDP_ACCOUNT_NUMBER=SEED_ACCOUNT, CDP_USER_STREAM_ID=SEED_STREAM_ID)
    app.config.update(config)
    CDP(app, clock=Clock(sleep=lambda seconds: None))
    return app


def run(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["cdp", *args])


# -- 1. the seed's configuration ----------------------------------------------------------


def test_the_seeds_configuration_works_end_to_end(sqlite_url: str, api: FakeStreamAPI, monkeypatch) -> None:
    for key, value in {"CDP_ACCOUNT_NUMBER": f" {SEED_ACCOUNT}\n", "CDP_USER_STREAM_ID": SEED_STREAM_ID,
                       "CDP_ACTIVATION_CLIENT_ID": "seed-client", "CDP_ACTIVATION_CLIENT_SECRET": "seed-secret-value",
                       "CDP_SEGMENT_GROUP_IDENTIFIER": SEED_GROUP}.items():
        monkeypatch.setenv(key, value)  # from the environment, whitespace and all, as a .env gives them
    app = Flask("seed_site")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_INLINE_WORKER=False, CDP_STREAM_API_URL=api.url)
    cdp = CDP(app)
    assert app.extensions["cdp"].settings.account_number == SEED_ACCOUNT
    with app.app_context():
        cdp.create_tables()
        cdp.store.create_group(SEED_GROUP, "Example")
    answer = app.test_client().post("/cdp/webhook", json={"segment_group_identifier": SEED_GROUP,
                                                           "audiences": [{"id": "5d822e81", "add": ["1"]}]},
                                    headers=basic_auth("seed-client", "seed-secret-value"))
    assert answer.status_code == 200 and answer.get_json()["applied"] == 1
    cdp.user_source(lambda: [{"id": 1, "login": "alice"}])
    assert run(app, "stream-user-data").exit_code == 0
    (request,) = api.received
    assert request.path == f"/stream/{SEED_ACCOUNT}" and request.headers["x-streamid"] == SEED_STREAM_ID
    with app.test_request_context("/"):
        head = render_template_string("{{ cdp_head_script() }}")
    assert 'customerId:"123456"' in head


@pytest.mark.parametrize("value", ["1", "1234", "123456", "999999999999", " 123456 "])
def test_any_account_number_of_1_to_12_digits_is_accepted(value: str) -> None:
    assert load_settings({"CDP_ACCOUNT_NUMBER": value}, {}).account_number == value.strip()


@pytest.mark.parametrize("value", ["", "1234567890123", "12a4", "12 34", "+1234", "0x1f"])
def test_anything_else_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"CDP_ACCOUNT_NUMBER": value}, {})
    assert "CDP_ACCOUNT_NUMBER" in str(refused.value) and "1-12 digits" in str(refused.value)


# -- 2-4. JSON types and absences, byte for byte --------------------------------------------


def test_ids_keep_their_json_type(sqlite_url: str, api: FakeStreamAPI) -> None:
    app = site(sqlite_url, api)
    cdp_of(app).user_source(lambda: [{"id": 7, "login": "int"}, {"id": "u-8", "login": "text"},
                                     SimpleNamespace(id=2**40, login="big")])
    assert run(app, "stream-user-data").exit_code == 0
    assert api.received[0].body == b'[{"id":7,"login":"int"},{"id":"u-8","login":"text"},{"id":1099511627776,"login":"big"}]'


def test_decimals_and_floats_are_numbers_with_every_digit(sqlite_url: str, api: FakeStreamAPI) -> None:
    app = site(sqlite_url, api, CDP_PRODUCT_STREAM_ID="products")
    cdp_of(app).product_source("food")(lambda: [
        {"id": 1, "price": Decimal("12.990")},
        {"id": 2, "price": Decimal("1234567890.123456789012345678")},
        {"id": 3, "price": 0.1, "in_stock": True},
        {"id": 4, "price": Decimal("-0"), "name": "free"},
    ])
    assert run(app, "stream-product-data").exit_code == 0
    assert api.received[0].body == (
        b'[{"id":1,"type":"food","price":12.990},{"id":2,"type":"food","price":1234567890.123456789012345678},'
        b'{"id":3,"type":"food","price":0.1,"in_stock":true},{"id":4,"type":"food","name":"free","price":-0}]'
    )


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("sNaN"), Decimal("Infinity"), float("-inf"), float("nan")])
def test_a_number_json_cannot_hold_skips_its_record_naming_the_key(sqlite_url: str, api: FakeStreamAPI, bad) -> None:
    app = site(sqlite_url, api, CDP_PRODUCT_STREAM_ID="products")
    cdp_of(app).product_source("food")(lambda: [{"id": 1, "price": Decimal("2.5")}, {"id": 2, "price": bad},
                                                {"id": 3, "price": 3}])
    result = run(app, "stream-product-data")
    assert result.exit_code == 1
    assert api.received[0].body == b'[{"id":1,"type":"food","price":2.5},{"id":3,"type":"food","price":3}]'
    assert "skipped food record id=2: price is" in result.stderr and "which JSON cannot hold" in result.stderr


def test_a_missing_key_is_left_out_and_an_explicit_none_is_null(sqlite_url: str, api: FakeStreamAPI) -> None:
    app = site(sqlite_url, api)
    cdp_of(app).user_source(lambda: [{"id": 1, "email": None}, SimpleNamespace(id=2, name="Bob"),
                                     {"id": 3, "login": "c", "email": "c@example.com", "name": None}])
    assert run(app, "stream-user-data").exit_code == 0
    assert api.received[0].body == (b'[{"id":1,"email":null},{"id":2,"name":"Bob"},'
                                    b'{"id":3,"login":"c","email":"c@example.com","name":null}]')


# -- 5. each product and content type has its own stream ---------------------------------------


@pytest.fixture
def typed_site(sqlite_url: str, api: FakeStreamAPI) -> Flask:
    app = site(sqlite_url, api, CDP_PRODUCT_STREAM_ID="products-default",
               CDP_PRODUCT_STREAM_IDS=json.dumps({"food": "stream-food", "toys": "stream-toys"}),
               CDP_CONTENT_STREAM_IDS={"article": "stream-article"})
    cdp = cdp_of(app)
    cdp.product_source("food")(lambda: [{"id": "f1"}])
    cdp.product_source("toys")(lambda: [{"id": "t1"}])
    cdp.product_source("books")(lambda: [{"id": "b1"}])
    cdp.content_source("article")(lambda: [{"id": 9}])
    return app


def test_a_type_goes_to_its_own_stream(typed_site: Flask, api: FakeStreamAPI) -> None:
    assert run(typed_site, "stream-product-data", "--product-type", "toys").exit_code == 0
    assert run(typed_site, "stream-product-data", "--product-type", "books").exit_code == 0
    assert run(typed_site, "stream-content-data", "--content-type", "article").exit_code == 0
    assert [(r.headers["x-streamid"], r.items) for r in api.received] == [
        ("stream-toys", [{"id": "t1", "type": "toys"}]),
        ("products-default", [{"id": "b1", "type": "books"}]),
        ("stream-article", [{"id": 9, "type": "article"}]),
    ]


def test_without_a_type_option_each_type_is_sent_to_its_own_stream(typed_site: Flask, api: FakeStreamAPI) -> None:
    result = run(typed_site, "stream-product-data")
    assert result.exit_code == 0, result.output
    assert sorted((r.headers["x-streamid"], r.items[0]["id"]) for r in api.received) == [
        ("products-default", "b1"), ("stream-food", "f1"), ("stream-toys", "t1")]
    assert "product type food: records=1" in result.stdout
    assert not any(secret in result.output for secret in ("stream-food", "stream-toys", "products-default"))


def test_a_type_without_any_stream_is_a_configuration_error(sqlite_url: str, api: FakeStreamAPI) -> None:
    app = site(sqlite_url, api, CDP_PRODUCT_STREAM_IDS={"food": "stream-food"})
    cdp_of(app).product_source("toys")(lambda: [{"id": "t1"}])
    result = run(app, "stream-product-data", "--product-type", "toys")
    assert result.exit_code == 2
    assert "CDP_PRODUCT_STREAM_ID or CDP_PRODUCT_STREAM_IDS['toys'] is not set" in result.stderr
    assert "stream-food" not in result.output and api.received == []


def test_a_schedule_entry_may_name_a_stream_id_which_never_reaches_the_crontab(
    sqlite_url: str, api: FakeStreamAPI, caplog
) -> None:
    schedule = {"product": [{"interval": "0 3 * * *", "options": "--no-draft --product-type food"},
                            {"interval": "30 3 * * *", "options": "--no-draft --stream-id scheduled-secret-id"}]}
    app = site(sqlite_url, api, CDP_PRODUCT_STREAM_ID="products-default", CDP_EXPORT_SCHEDULE=schedule)
    cdp_of(app).product_source("food")(lambda: [{"id": "f1"}])
    crontab = run(app, "export-schedule", "--directory", "/srv/shop", "--flask", "/srv/venv/bin/flask", "--app", "wsgi")
    assert crontab.exit_code == 0, crontab.output
    assert crontab.stdout.splitlines() == [
        "0 3 * * * cd /srv/shop && /srv/venv/bin/flask --app wsgi cdp stream-product-data --no-draft --product-type food",
        "30 3 * * * cd /srv/shop && /srv/venv/bin/flask --app wsgi cdp scheduled-export product 2",
    ]
    with caplog.at_level(logging.DEBUG):
        ran = run(app, "scheduled-export", "product", "2")
    assert ran.exit_code == 0, ran.output
    (request,) = api.received
    assert request.headers["x-streamid"] == "scheduled-secret-id" and "x-isdraft" not in request.headers
    assert "scheduled-secret-id" not in ran.output + caplog.text
    missing = run(app, "scheduled-export", "product", "3")
    assert missing.exit_code == 2 and "has 2 entries, not 3" in missing.stderr


# -- 6. Raptor's event types ----------------------------------------------------------------------


@pytest.fixture
def tracking_site(sqlite_url: str) -> Flask:
    app = Flask("tracking_fidelity")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_INLINE_WORKER=False, CDP_ACCOUNT_NUMBER=SEED_ACCOUNT,
                      CDP_TRACKING_PARAMETERS={"searchclick": {"id": "p9"}, "favorite": {"name": "p30"}})
    CDP(app)
    return app


@pytest.mark.parametrize(("template", "pushed"), [
    ("{{ cdp_track_event('favorite', id='42', name='Cat tree') }}", '{"p1":"favorite","p2":"42","p30":"Cat tree"}'),
    ("{{ cdp_track_event('searchclick', id='42') }}", '{"p1":"searchclick","p9":"42"}'),
    ("{{ cdp_track_event('searchresult', id='42', p9='cat food') }}", '{"p1":"searchresult","p2":"42","p9":"cat food"}'),
])
def test_favorite_searchclick_and_searchresult_are_known_and_movable(tracking_site: Flask, template: str,
                                                                     pushed: str) -> None:
    with tracking_site.test_request_context("/"):
        html = render_template_string(template)
    assert f'window.raptor.push("trackEvent",{pushed});' in html


# -- 8. one category path format ----------------------------------------------------------------


def test_the_export_sends_category_paths_in_the_tracking_text_form(sqlite_url: str, api: FakeStreamAPI) -> None:
    app = site(sqlite_url, api, CDP_PRODUCT_STREAM_ID="products")
    cdp_of(app).product_source("food")(lambda: [
        {"id": 1, "category_path": [("pets", "Pets"), ("cats", "Cats; big, small #1")]},
        {"id": 2, "category_path": ["Pets", "Dogs"]},
        {"id": 3, "category_path": "400#running;402#running-clothes"},
        {"id": 4, "category_path": [("pets", 5.5, "too many")]},
    ])
    result = run(app, "stream-product-data")
    assert result.exit_code == 1
    assert api.received[0].body == (
        b'[{"id":1,"type":"food","category_path":"pets#Pets;cats#Cats big small 1"},'
        b'{"id":2,"type":"food","category_path":"Pets;Dogs"},'
        b'{"id":3,"type":"food","category_path":"400#running;402#running-clothes"}]'
    )
    assert "skipped food record id=4: category_path: category_path[0] must be an (id, name) pair" in result.stderr
    with app.test_request_context("/"):
        tracked = render_template_string("{{ cdp_track_visit('1', category_path=path) }}",
                                         path=[("pets", "Pets"), ("cats", "Cats; big, small #1")])
    assert '"p4":"pets#Pets;cats#Cats big small 1"' in tracked
