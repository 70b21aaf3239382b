"""The export sends JSON types and absences the way Ibexa does, byte for byte against the local fake Streaming API."""

from __future__ import annotations

from datetime import date
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


TRICKY_TEXT = ["\x00\x01\x1f\x7f", "\u2028\u2029", "Zoë ü 😀", '"\\/</script>', "\b\f\n\r\t", "\ud7ff\ue000\uffff", "",
               "\x1b[0m", "a" * 5000]


def test_a_batch_of_plain_values_is_the_same_text_from_orjson_as_from_the_standard_library() -> None:
    """The usual batch (text, whole numbers, booleans, nulls) goes through orjson, the
    rest as before: byte for byte the same text, and what orjson refuses still goes out."""
    import orjson

    from cdp_bridge.export.runner import _ENCODER, _encoded, _plain_items

    items = [{"id": i, "login": text, "n": number, "ok": flag, "none": None}
             for i, text in enumerate(TRICKY_TEXT)
             for number, flag in ((0, True), (-1, False), (2**63 - 1, True), (-(2**63), False))]
    assert _plain_items(items)
    assert orjson.dumps(items) == _ENCODER.encode(items).encode("utf-8") == _encoded(items)
    # orjson refuses these two; the standard library writes the big number, and names the surrogate
    assert _encoded([{"id": 2**70}]) == b'[{"id":1180591620717411303424}]'
    with pytest.raises(UnicodeEncodeError):
        _encoded([{"id": 1, "name": "lone \ud800"}])
    # floats (orjson writes NaN as null), dates and other objects never reach orjson
    for value in (0.5, float("nan"), date(2026, 1, 2), Decimal("1"), ("a",), {"k": "v"}):
        assert not _plain_items([{"id": 1, "v": value}])
    assert not _plain_items([("not", "a dict")]) and not _plain_items({"id": 1})
