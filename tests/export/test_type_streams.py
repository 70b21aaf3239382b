"""Each product and content type goes to its own stream, and a scheduled stream id never reaches the crontab."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from tests.support.fake_stream_api import FakeStreamAPI
from tests.support.seed import run, site
from tests.support.webhook import cdp_of


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
