"""The values of Ibexa's own seed configuration (ibexa_cdp.yaml) work end to end, and any Raptor account number of 1-12 digits is accepted."""

from __future__ import annotations

import pytest
from flask import Flask, render_template_string

from cdp_bridge import CDP
from cdp_bridge.errors import ConfigurationError
from cdp_bridge.settings import load_settings
from tests.support.fake_stream_api import FakeStreamAPI
from tests.support.seed import SEED_ACCOUNT, SEED_GROUP, SEED_STREAM_ID, run
from tests.support.webhook import basic_auth


def test_the_seeds_configuration_works_end_to_end(sqlite_url: str, api: FakeStreamAPI, monkeypatch) -> None:
    for key, value in {"CDP_ACCOUNT_NUMBER": f" {SEED_ACCOUNT}\n", "CDP_USER_STREAM_ID": SEED_STREAM_ID,
                       "CDP_ACTIVATION_CLIENT_ID": "seed-client", "CDP_ACTIVATION_CLIENT_SECRET": "seed-secret-value",
                       "CDP_SEGMENT_GROUP_IDENTIFIER": SEED_GROUP}.items():
        monkeypatch.setenv(key, value)  # from the environment, whitespace and all, as a .env gives them
    app = Flask("seed_site")
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_INLINE_WORKER=False, CDP_STREAM_API_URL=api.url)
    cdp = CDP(app)
    assert app.extensions["cdp"].settings.site.account_number == SEED_ACCOUNT
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
    assert load_settings({"CDP_ACCOUNT_NUMBER": value}, {}).site.account_number == value.strip()


@pytest.mark.parametrize("value", ["", "1234567890123", "12a4", "12 34", "+1234", "0x1f"])
def test_anything_else_is_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        load_settings({"CDP_ACCOUNT_NUMBER": value}, {})
    assert "CDP_ACCOUNT_NUMBER" in str(refused.value) and "1-12 digits" in str(refused.value)
