"""Settings: read from app.config then the environment, validated by one schema."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from cdp_bridge import CDP, ConfigurationError
from cdp_bridge.settings import load_settings

SECRET = "very-secret-client-secret"


def test_defaults_when_nothing_is_configured() -> None:
    settings = load_settings({}, {})
    assert settings.webhook.bulk_async_threshold == 100
    assert settings.webhook.max_bytes == 32 * 1024 * 1024
    assert settings.export.stream_api_url == "https://in.raptorsmartadvisor.com/stream"
    assert settings.tracking.script_url.endswith("/raptor-3.0.min.js")
    assert settings.webhook.activations == ()
    assert settings.worker.inline is None


def test_config_wins_over_environment() -> None:
    settings = load_settings({"CDP_BULK_ASYNC_THRESHOLD": 7}, {"CDP_BULK_ASYNC_THRESHOLD": "9"})
    assert settings.webhook.bulk_async_threshold == 7


def test_environment_strings_are_converted() -> None:
    environ = {
        "CDP_BULK_ASYNC_THRESHOLD": "250",
        "CDP_INLINE_WORKER": "off",
        "CDP_ACCOUNT_NUMBER": "12345",
        "CDP_TRACKING_PARAMETERS": '{"buy": {"currency": "p9"}}',
        "CDP_WEBHOOK_SIGNING_SECRETS": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24=",
        "CDP_EXPORT_SCHEDULE": '{"user": [{"interval": "0 3 * * *", "options": "--no-draft"}]}',
    }
    settings = load_settings({}, environ)
    assert settings.webhook.bulk_async_threshold == 250
    assert settings.worker.inline is False
    assert settings.site.account_number == "12345"
    assert settings.tracking.parameters == {"buy": {"currency": "p9"}}
    assert len(settings.webhook.signing_secrets) == 2
    assert settings.export.schedule["user"][0].options == "--no-draft"


def test_integer_account_number_is_accepted() -> None:
    assert load_settings({"CDP_ACCOUNT_NUMBER": 4321}, {}).site.account_number == "4321"


def test_single_activation_from_ibexa_names() -> None:
    settings = load_settings(
        {
            "CDP_ACTIVATION_CLIENT_ID": "abc",
            "CDP_ACTIVATION_CLIENT_SECRET": SECRET,
            "CDP_SEGMENT_GROUP_IDENTIFIER": "shop",
        },
        {},
    )
    (activation,) = settings.webhook.activations
    assert activation.client_id == "abc"
    assert activation.client_secret.reveal() == SECRET
    assert activation.segment_group_identifier == "shop"
    assert settings.webhook.protected_group_identifiers == {"shop"}


def test_several_activations_from_a_json_environment_value() -> None:
    activations = [
        {"client_id": "a", "client_secret": "first-secret-0123456789", "segment_group_identifier": "one"},
        {"client_id": "b", "client_secret": "second-secret-0123456789", "segment_group_identifier": "two"},
    ]
    settings = load_settings({}, {"CDP_ACTIVATIONS": json.dumps(activations)})
    assert [a.client_id for a in settings.webhook.activations] == ["a", "b"]
    assert settings.webhook.protected_group_identifiers == {"one", "two"}


def test_secrets_do_not_appear_in_repr() -> None:
    settings = load_settings(
        {
            "CDP_ACTIVATIONS": [{"client_id": "a", "client_secret": SECRET, "segment_group_identifier": "g"}],
            "CDP_USER_STREAM_ID": "stream-secret-id",
        },
        {},
    )
    assert SECRET not in repr(settings)
    assert "stream-secret-id" not in repr(settings)
    assert SECRET not in repr(settings.webhook.activations)


@pytest.mark.parametrize(
    ("config", "named_key", "expected"),
    [
        ({"CDP_BULK_ASYNC_THRESHOLD": "abc"}, "CDP_BULK_ASYNC_THRESHOLD", "whole number"),
        ({"CDP_BULK_ASYNC_THRESHOLD": 0}, "CDP_BULK_ASYNC_THRESHOLD", "at least 1"),
        ({"CDP_WEBHOOK_MAX_BYTES": "-5"}, "CDP_WEBHOOK_MAX_BYTES", "at least 1"),
        ({"CDP_ACCOUNT_NUMBER": "1234567890123"}, "CDP_ACCOUNT_NUMBER", "1-12 digits"),
        ({"CDP_ACCOUNT_NUMBER": "12a456"}, "CDP_ACCOUNT_NUMBER", "1-12 digits"),
        ({"CDP_ACCOUNT_NUMBER": "-12345"}, "CDP_ACCOUNT_NUMBER", "1-12 digits"),
        ({"CDP_ACCOUNT_NUMBER": "12 345"}, "CDP_ACCOUNT_NUMBER", "1-12 digits"),
        ({"CDP_ACCOUNT_NUMBER": "１２３"}, "CDP_ACCOUNT_NUMBER", "1-12 digits"),
        ({"CDP_TRACKING_PARAMETERS": "[1]"}, "CDP_TRACKING_PARAMETERS", "expected a mapping"),
        ({"CDP_EXPORT_SCHEDULE": "[1]"}, "CDP_EXPORT_SCHEDULE", "expected a mapping"),
        ({"CDP_PRODUCT_STREAM_IDS": "[1]"}, "CDP_PRODUCT_STREAM_IDS", "type to stream id"),
        ({"CDP_CONTENT_STREAM_IDS": '{"article": ""}'}, "CDP_CONTENT_STREAM_IDS.article", "non-empty"),
        ({"CDP_ACTIVATIONS": '[{"client_id": "a", "client_secret": "' + SECRET + '"'}, "CDP_ACTIVATIONS", "valid JSON"),
        ({"CDP_ACTIVATIONS": '{"client_id": "a"}'}, "CDP_ACTIVATIONS", "list of activations"),
        (
            {"CDP_ACTIVATIONS": [{"client_id": "a", "segment_group_identifier": "g"}]},
            "CDP_ACTIVATIONS[0].client_secret",
            "required",
        ),
        (
            {"CDP_ACTIVATIONS": [{"client_id": "a", "client_secret": SECRET, "segment_group_identifier": "Bad Group"}]},
            "CDP_ACTIVATIONS[0].segment_group_identifier",
            "lower-case",
        ),
        ({"CDP_SEGMENT_GROUP_IDENTIFIER": "shop two"}, "CDP_SEGMENT_GROUP_IDENTIFIER", "lower-case"),
        ({"CDP_ACTIVATION_CLIENT_ID": "a"}, "CDP_ACTIVATION_CLIENT_SECRET", "required together"),
        ({"CDP_STREAM_API_URL": "ftp://example.org"}, "CDP_STREAM_API_URL", "http(s) URL"),
        ({"CDP_STREAM_API_URL": "https://"}, "CDP_STREAM_API_URL", "http(s) URL"),
        ({"CDP_STREAM_API_URL": "https://api example.org/"}, "CDP_STREAM_API_URL", "http(s) URL"),
        ({"CDP_STREAM_API_URL": "https://example.org:99999/"}, "CDP_STREAM_API_URL", "http(s) URL"),
        ({"CDP_STREAM_API_URL": "/stream"}, "CDP_STREAM_API_URL", "http(s) URL"),
        ({"CDP_TRACKING_SCRIPT_URL": "//cdn.example.org/raptor.js"}, "CDP_TRACKING_SCRIPT_URL", "path starting with /"),
        ({"CDP_TRACKING_SCRIPT_URL": "javascript:alert(1)"}, "CDP_TRACKING_SCRIPT_URL", "path starting with /"),
        ({"CDP_WEBHOOK_SIGNING_SECRETS": "not-a-whsec"}, "CDP_WEBHOOK_SIGNING_SECRETS", "whsec_"),
        ({"CDP_WEBHOOK_SIGNING_SECRETS": "whsec_%%%"}, "CDP_WEBHOOK_SIGNING_SECRETS", "base64"),
        ({"CDP_TRACKING_PARAMETERS": {"buy": {"colour": "p9"}}}, "CDP_TRACKING_PARAMETERS", "unknown field"),
        ({"CDP_TRACKING_PARAMETERS": {"buy": {"currency": "9"}}}, "CDP_TRACKING_PARAMETERS", "'p9'"),
        ({"CDP_CONSENT_COOKIE": "bad cookie"}, "CDP_CONSENT_COOKIE", "cookie name"),
        ({"CDP_INLINE_WORKER": "perhaps"}, "CDP_INLINE_WORKER", "true or false"),
        ({"CDP_EXPORT_SCHEDULE": {"user": [{"interval": "daily"}]}}, "CDP_EXPORT_SCHEDULE", "five fields"),
        ({"CDP_EXPORT_SCHEDULE": {"orders": []}}, "CDP_EXPORT_SCHEDULE", "user, product, content"),
        ({"CDP_USER_STREAM_ID": "   "}, "CDP_USER_STREAM_ID", "non-empty"),
        ({"CDP_TRACKING_CONCURRENCY": "0"}, "CDP_TRACKING_CONCURRENCY", "from 1 to 64"),
        ({"CDP_TRACKING_CONCURRENCY": "many"}, "CDP_TRACKING_CONCURRENCY", "from 1 to 64"),
        ({"CDP_TRACKING_BUY_OUTBOX": "sometimes"}, "CDP_TRACKING_BUY_OUTBOX", "true or false"),
    ],
)
def test_a_wrong_value_names_the_key_and_what_it_expects(config: dict, named_key: str, expected: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config, {})
    message = str(caught.value)
    assert named_key in message
    assert expected in message
    assert SECRET not in message


def test_two_activations_with_one_client_id_are_refused_without_echoing_secrets() -> None:
    activations = [
        {"client_id": "same", "client_secret": SECRET, "segment_group_identifier": "one"},
        {"client_id": "same", "client_secret": SECRET + "2", "segment_group_identifier": "two"},
    ]
    with pytest.raises(ConfigurationError, match="client id 'same' is configured twice") as caught:
        load_settings({"CDP_ACTIVATIONS": activations}, {})
    assert SECRET not in str(caught.value)


def test_single_activation_and_list_may_not_share_a_client_id() -> None:
    config = {
        "CDP_ACTIVATION_CLIENT_ID": "same",
        "CDP_ACTIVATION_CLIENT_SECRET": SECRET,
        "CDP_SEGMENT_GROUP_IDENTIFIER": "one",
        "CDP_ACTIVATIONS": [{"client_id": "same", "client_secret": "third-secret-0123456789", "segment_group_identifier": "two"}],
    }
    with pytest.raises(ConfigurationError, match="configured twice"):
        load_settings(config, {})


def test_start_up_stops_on_a_wrong_value(sqlite_url: str) -> None:
    app = Flask(__name__)
    app.config.update(SQLALCHEMY_DATABASE_URI=sqlite_url, CDP_BULK_ASYNC_THRESHOLD="abc")
    with pytest.raises(ConfigurationError, match="CDP_BULK_ASYNC_THRESHOLD"):
        CDP(app)
    assert "cdp" not in app.extensions


def test_environment_is_read_at_start_up(monkeypatch: pytest.MonkeyPatch, sqlite_url: str) -> None:
    monkeypatch.setenv("CDP_BULK_ASYNC_THRESHOLD", "42")
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
    CDP(app)
    assert app.extensions["cdp"].settings.webhook.bulk_async_threshold == 42


def test_a_dotenv_file_is_read_but_never_written_into_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path, sqlite_url: str
) -> None:
    """An extension that changes the process environment surprises: ``CDP(app)`` reads
    app.config, then the environment, then the working directory's ``.env`` for what the
    environment does not set (gunicorn loads none), and writes none of them."""
    import os

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("CDP_ACCOUNT_NUMBER=5678\nSOMETHING_ELSE=1\n")
    monkeypatch.delenv("CDP_ACCOUNT_NUMBER", raising=False)
    before = dict(os.environ)
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
    CDP(app)
    assert dict(os.environ) == before
    assert app.extensions["cdp"].settings.site.account_number == "5678"
    monkeypatch.setenv("CDP_ACCOUNT_NUMBER", "4321")  # the environment wins over the file
    other = Flask(__name__)
    other.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
    CDP(other)
    assert other.extensions["cdp"].settings.site.account_number == "4321"


def test_a_site_fills_app_config_from_its_dotenv_or_the_prefixed_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path, sqlite_url: str
) -> None:
    """The documented ways: ``app.config.from_prefixed_env()`` (``FLASK_CDP_…``), or the
    ``.env`` values put into app.config by the site (as the demo's wsgi.py does)."""
    from dotenv import dotenv_values

    (tmp_path / ".env").write_text("CDP_ACCOUNT_NUMBER=5678\n")
    monkeypatch.setenv("FLASK_CDP_BULK_ASYNC_THRESHOLD", "77")
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = sqlite_url
    app.config.from_prefixed_env()
    app.config.from_mapping(dotenv_values(tmp_path / ".env"))
    CDP(app)
    settings = app.extensions["cdp"].settings
    assert (settings.site.account_number, settings.webhook.bulk_async_threshold) == ("5678", 77)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CDP_STREAM_API_URL", "http://127.0.0.1:8080/stream"),
        ("CDP_STREAM_API_URL", "https://[::1]:8443/stream"),
        ("CDP_TRACKING_SCRIPT_URL", "https://cdn.example.org/raptor.js"),
        ("CDP_TRACKING_SCRIPT_URL", "/static/raptor-demo.js"),
    ],
)
def test_urls_and_site_paths_that_are_accepted(key: str, value: str) -> None:
    settings = load_settings({key: f"  {value} "}, {})
    found = settings.export.stream_api_url if key == "CDP_STREAM_API_URL" else settings.tracking.script_url
    assert found == value


def test_the_docs_settings_table_is_the_schemas() -> None:
    """The schema is each setting's one source: its key, default and documentation. The
    docs' table is made from it (cdp_bridge.settings.settings_table), so it cannot drift."""
    from pathlib import Path

    from cdp_bridge.settings import ALL_KEYS, settings_table

    readme = (Path(__file__).resolve().parent.parent / "docs" / "settings.md").read_text()
    assert settings_table() in readme
    assert len(ALL_KEYS) == len(set(ALL_KEYS)) == settings_table().count("\n| `CDP_")


#: A malformed value for every setting: each must be refused with the key named, as a
#: ConfigurationError (status 2 from ``flask``), never a traceback.
MALFORMED = {
    "CDP_ACCOUNT_NUMBER": "12ab",
    "CDP_ACTIVATION_CLIENT_ID": "x" * 256,
    "CDP_ACTIVATION_CLIENT_SECRET": "...",
    "CDP_SEGMENT_GROUP_IDENTIFIER": "Not A Group",
    "CDP_ACTIVATIONS": '[{"client_id": "a"',
    "CDP_USER_STREAM_ID": "...",
    "CDP_PRODUCT_STREAM_ID": "<your stream id>",
    "CDP_CONTENT_STREAM_ID": "changeme",
    "CDP_PRODUCT_STREAM_IDS": '{"food": ',
    "CDP_CONTENT_STREAM_IDS": "[1, 2]",
    "CDP_STREAM_API_URL": "ftp://example.org",
    "CDP_BULK_ASYNC_THRESHOLD": "ten",
    "CDP_WEBHOOK_MAX_BYTES": "1e6",
    "CDP_WEBHOOK_SIGNING_SECRETS": "[whsec_abc",
    "CDP_TRACKING_SCRIPT_URL": "javascript:alert(1)",
    "CDP_TRACKING_PARAMETERS": "{buy: p9}",
    "CDP_CONSENT_COOKIE": "no;cookie",
    "CDP_INLINE_WORKER": "sometimes",
    "CDP_EXPORT_SCHEDULE": '{"user": [{"interval": "every day"}]}',
    "CDP_WORKER_LEASE_SECONDS": "0",
    "CDP_ADMIN_SITE_URL": "//evil.example",
    "CDP_MEMBERSHIP_API_URL": "not a url",
    "CDP_MEMBERSHIP_ACTIVATION_ID": "\x00",
    "CDP_MEMBERSHIP_API_KEY": "...",
    "CDP_MEMBERSHIP_TIMEOUT": "soon",
    "CDP_MEMBERSHIP_MAX_BYTES": "12",
    "CDP_MEMBERSHIP_FAILURES_BEFORE_PAUSE": "-1",
    "CDP_MEMBERSHIP_PAUSE_SECONDS": "1.5",
    "CDP_REDIS_PAUSE_SECONDS": "0",
    "CDP_VISITOR_SEGMENTS_CACHE_TTL": "-5",
    "CDP_CACHE_URL": "memcached://localhost",
    "CDP_TRACKING_MODE": "sideways",
    "CDP_SERVER_TRACKING_URL": "https://",
    "CDP_TRACKING_CONCURRENCY": "1000",
    "CDP_TRACKING_BUY_OUTBOX": "durable",
    "CDP_VISITOR_COOKIE_DAYS": "500",
    "CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE": "0",
    "CDP_WEBHOOK_AUTH_FAILURES_PER_MINUTE": "none",
    "CDP_RATE_LIMIT_STORAGE_URI": "nosuchstore://x",
    "CDP_METRICS_TOKEN": "short",
    "CDP_RECOMMENDATIONS_API_URL": "http://exa mple.org",
    "CDP_RECOMMENDATIONS_API_KEY": "…",
    "CDP_RECOMMENDATIONS_TIMEOUT": "-1",
    "CDP_RECOMMENDATIONS_CACHE_TTL": "forever",
    "CDP_RECOMMENDATION_MODULES": '{"also": ',
    "CDP_COOKIE_DOMAIN": "shop example.com",
    "CDP_FORGET_HOLD_DAYS": "-1",
    "CDP_FORGET_GIVE_UP_DAYS": "0",
    "CDP_TRACK_WITHOUT_CONSENT": "anonymous",
    "CDP_GDPR_API_URL": "gdpr-api.example.com",
    "CDP_RECONCILE_MAX_BYTES": "10",
    "CDP_RECONCILE_SCHEDULE": "every night",
    "CDP_HISTORY_DAYS": "0",
    "CDP_GDPR_API_KEY": "<your key>",
}


def test_every_setting_has_a_malformed_example() -> None:
    from cdp_bridge.settings import ALL_KEYS

    assert set(MALFORMED) == set(ALL_KEYS)


@pytest.mark.parametrize(("key", "value"), sorted(MALFORMED.items()))
def test_a_malformed_value_of_any_setting_is_refused_naming_it(key: str, value: str) -> None:
    environ = {key: value}
    if key == "CDP_MEMBERSHIP_API_KEY":
        environ["CDP_MEMBERSHIP_ACTIVATION_ID"] = "activation"
    with pytest.raises(ConfigurationError) as caught:
        load_settings({}, environ)
    message = str(caught.value)
    assert message.startswith("invalid cdp_bridge setting: ") and key in message, message
    if value.strip() not in ("", "..."):
        assert value not in message or len(value) < 4  # the value is not echoed (it may be a secret)


@pytest.mark.parametrize("secret", ["whsec_", "whsec_c2VjcmV0", "whsec_" + "QUFB" * 30])
def test_an_empty_or_short_or_long_signing_key_is_refused(secret: str) -> None:
    with pytest.raises(ConfigurationError, match=r"CDP_WEBHOOK_SIGNING_SECRETS.*24-64 bytes"):
        load_settings({}, {"CDP_WEBHOOK_SIGNING_SECRETS": secret})


@pytest.mark.parametrize("key", ["CDP_ACTIVATION_CLIENT_SECRET", "CDP_MEMBERSHIP_API_KEY", "CDP_USER_STREAM_ID",
                                 "CDP_RECOMMENDATIONS_API_KEY"])
@pytest.mark.parametrize("placeholder", ["...", "…", "<secret>", "changeme", "your-secret-here", "xxxx"])
def test_placeholders_left_in_a_pasted_env_are_refused(key: str, placeholder: str) -> None:
    environ = {key: placeholder, "CDP_MEMBERSHIP_ACTIVATION_ID": "activation"}
    with pytest.raises(ConfigurationError, match=f"{key}: expected a real secret, not a placeholder"):
        load_settings({}, environ)


def test_a_short_client_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="CDP_ACTIVATION_CLIENT_SECRET: expected a secret of at least 16"):
        load_settings({}, {"CDP_ACTIVATION_CLIENT_ID": "a", "CDP_ACTIVATION_CLIENT_SECRET": "short-one",
                           "CDP_SEGMENT_GROUP_IDENTIFIER": "g"})


def test_an_unknown_setting_is_a_warning_at_start_naming_the_closest_key(tmp_path, monkeypatch, caplog) -> None:
    """From the environment, the .env file and app.config alike: a misspelt key would
    otherwise be silently ignored."""
    monkeypatch.setenv("CDP_TRAKING_MODE", "server")
    (tmp_path / ".env").write_text("CDP_ACOUNT_NUMBER=123456\n")
    app = Flask("unknown_keys", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/x.sqlite3", CDP_INLINE_WORKER=False,
                      CDP_VISITOR_COOKIE_DAY=30, CDP_SOMETHING_ELSE_ENTIRELY="1")
    with caplog.at_level("WARNING", logger="cdp_bridge"):
        CDP(app)
    assert sorted(r.getMessage() for r in caplog.records if r.name == "cdp_bridge") == [
        "unknown setting CDP_ACOUNT_NUMBER (did you mean CDP_ACCOUNT_NUMBER?); it is ignored",
        "unknown setting CDP_SOMETHING_ELSE_ENTIRELY; it is ignored",
        "unknown setting CDP_TRAKING_MODE (did you mean CDP_TRACKING_MODE?); it is ignored",
        "unknown setting CDP_VISITOR_COOKIE_DAY (did you mean CDP_VISITOR_COOKIE_DAYS?); it is ignored",
    ]


def test_cdp_env_file_names_the_env_file_read(tmp_path, monkeypatch) -> None:
    """gunicorn.conf.py points its workers at the last .env that passed its check."""
    from cdp_bridge.settings import process_environment

    (tmp_path / ".env").write_text("CDP_TRACKING_MODE=sever\n")
    checked = tmp_path / "checked.env"
    checked.write_text("CDP_TRACKING_MODE=server\n")
    assert process_environment()["CDP_TRACKING_MODE"] == "sever"
    monkeypatch.setenv("CDP_ENV_FILE", str(checked))
    assert process_environment()["CDP_TRACKING_MODE"] == "server"
    assert load_settings({}).tracking.mode == "server"


def test_check_env_file_says_what_would_stop_an_app(tmp_path) -> None:
    from cdp_bridge.settings import check_env_file

    path = tmp_path / "site.env"
    path.write_text("CDP_TRACKING_MODE=server\nCDP_WORKER_LEASE_SECOND=30\n")
    assert check_env_file(str(path), {}) == (None, [
        "unknown setting CDP_WORKER_LEASE_SECOND (did you mean CDP_WORKER_LEASE_SECONDS?); it is ignored"])
    path.write_text("CDP_TRACKING_MODE=sever\n")
    assert check_env_file(str(path), {}) == (
        "invalid cdp_bridge setting: CDP_TRACKING_MODE: expected one of client, server, hybrid", [])
    assert check_env_file(str(path), {"CDP_TRACKING_MODE": "client"}) == (None, [])  # the environment wins
    assert check_env_file(str(tmp_path / "none.env"), {})[0] == f"{tmp_path / 'none.env'}: no such file"


@pytest.mark.parametrize(("given", "expected"), [
    ("postgres://shop:pw@db.example:5433/shop", "postgresql+psycopg://shop:pw@db.example:5433/shop"),
    ("postgresql://shop@/shop", "postgresql+psycopg://shop@/shop"),
    ("postgresql+psycopg2://shop@/shop", "postgresql+psycopg2://shop@/shop"),
    ("postgresql+psycopg://shop@/shop", "postgresql+psycopg://shop@/shop"),
    ("sqlite:///shop.sqlite3", "sqlite:///shop.sqlite3"),
    ("mysql://x@y/z", "mysql://x@y/z"),
])
def test_postgres_urls_name_the_installed_driver(given: str, expected: str) -> None:
    from cdp_bridge import database_url

    assert database_url(given) == expected


def test_a_postgres_url_as_hosts_hand_it_out_serves(tmp_path, postgres_server) -> None:
    url = postgres_server.create_database()  # postgresql+psycopg://…
    hosted = "postgres://" + url.split("://", 1)[1]
    app = Flask("hosted", instance_path=str(tmp_path / "instance"))
    app.config.update(SQLALCHEMY_DATABASE_URI=hosted, CDP_INLINE_WORKER=False)
    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
        assert app.extensions["cdp"].engine.dialect.driver == "psycopg"
        assert cdp.store.list_groups() == []


def test_settings_come_in_sections_and_each_outside_api_is_one() -> None:
    """Each section holds its own keys; an outside API's section is an OutsideApi (URL, key,
    timeout, cache TTL, breaker), the one thing its client is made from."""
    from cdp_bridge.settings import OutsideApi, settings_table

    settings = load_settings({"CDP_MEMBERSHIP_ACTIVATION_ID": "act-1", "CDP_MEMBERSHIP_API_KEY": "k" * 20,
                              "CDP_MEMBERSHIP_TIMEOUT": "2.5", "CDP_WEBHOOK_MAX_BYTES": 2048,
                              "CDP_TRACKING_MODE": "hybrid"}, {})
    assert (settings.webhook.max_bytes, settings.tracking.mode, settings.worker.lease_seconds) == (2048, "hybrid", 120)
    membership, recommendations = settings.membership_api, settings.recommendations_api
    assert isinstance(membership, OutsideApi) and isinstance(recommendations, OutsideApi)
    assert (membership.name, membership.timeout, membership.enabled, membership.key.reveal()) == (
        "membership", 2.5, True, "k" * 20)
    assert (recommendations.name, recommendations.timeout, recommendations.key) == ("recommendations", 1.0, None)
    assert "k" * 20 not in repr(settings)
    table = settings_table()
    assert table.index("| **The activation webhook** | | |") < table.index("`CDP_WEBHOOK_MAX_BYTES`") < table.index(
        "| **Tracking** | | |")
