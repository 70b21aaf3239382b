"""The export sends JSON types and absences the way Ibexa does, byte for byte against the local fake Streaming API."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace

import pytest

from tests.support.fake_stream_api import FakeStreamAPI
from tests.support.seed import run, site
from tests.support.webhook import cdp_of


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


def test_a_batch_is_the_same_text_whichever_encoder_writes_it() -> None:
    """A batch without a Decimal goes through the standard library's encoder, one with a
    Decimal through simplejson's: the same values must give the same bytes."""
    from collections import namedtuple
    from datetime import date, datetime

    from cdp_bridge.export.runner import _DECIMAL_ENCODER, _ENCODER, _encoded

    Point = namedtuple("Point", "x y")
    items = [{"id": 1, "name": "Zoë \u2028 \"q\" \\ </script>", "seen": datetime(2026, 12, 5, 9, 30), "born": date(1990, 1, 2),
              "tags": ("a", "b"), "at": Point(1, 2), "score": 0.1, "big": 2**70, "none": None, "yes": True,
              "nested": {"k": [1, {"x": "y"}]}}]
    assert _ENCODER.encode(items) == _DECIMAL_ENCODER.encode(items)
    assert _encoded(items).startswith(b'[{"id":1,"name":"Zo\xc3\xab \xe2\x80\xa8 \\"q\\" \\\\ </script>"')
    assert b'"at":[1,2]' in _encoded(items)
    assert _encoded([{"id": 1, "seen": date(2026, 1, 2)}, {"id": 2, "price": Decimal("2.50")}]) == (
        b'[{"id":1,"seen":"2026-01-02"},{"id":2,"price":2.50}]')
