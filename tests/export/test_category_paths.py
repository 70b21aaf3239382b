"""The export sends category paths in the text form tracking uses."""

from __future__ import annotations

from flask import render_template_string

from tests.support.fake_stream_api import FakeStreamAPI
from tests.support.seed import run, site
from tests.support.webhook import cdp_of


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
