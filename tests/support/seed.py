"""A site configured with the values of Ibexa's own seed configuration, exporting to the
local fake Streaming API: what the fidelity tests start from."""

from __future__ import annotations

from typing import Any

from flask import Flask

from cdp_bridge import CDP
from cdp_bridge.model import Clock
from tests.support.fake_stream_api import FakeStreamAPI

#: The values of Ibexa's recipe ibexa/cdp/5.0/config/packages/ibexa_cdp.yaml.
SEED_ACCOUNT = "123456"
SEED_STREAM_ID = "00000000-00000000-00000000-00000000"
SEED_GROUP = "example_segment_group_identifier"


def site(sqlite_url: str, api: FakeStreamAPI, **config: Any) -> Flask:
    """A site with the seed's account and user stream, whose export never waits to retry."""
    app = Flask("fidelity_site")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_INLINE_WORKER=False, CDP_STREAM_API_URL=api.url,
                      CDP_ACCOUNT_NUMBER=SEED_ACCOUNT, CDP_USER_STREAM_ID=SEED_STREAM_ID)
    app.config.update(config)
    CDP(app, clock=Clock(sleep=lambda seconds: None))
    return app


def run(app: Flask, *args: str) -> Any:
    """``flask cdp ARGS`` in the app, through click's test runner."""
    return app.test_cli_runner().invoke(args=["cdp", *args])
