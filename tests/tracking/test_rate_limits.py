"""Hybrid's ``POST /cdp/track`` limits on Flask-Limiter (SPEC section 12): counts shared
through Redis, the host's own Limiter used when it has one, and a storage outage that
fails no request."""

from __future__ import annotations

import logging
import uuid

import pytest
from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from cdp_bridge import CDP, ConfigurationError
from cdp_bridge.metrics import RATE_LIMITED
from tests.support.fake_tracking_host import FakeTrackingHost
from tests.support.polling import wait_until
from tests.support.redis_server import RedisServer
from tests.support.tracking_site import VISIT, VISITOR, consenting_client, post_event

REDIS_PASSWORD_URL = "redis://:hunter2-rate-password@127.0.0.1:1/0"


def test_two_apps_on_one_redis_share_the_address_limit(make_site, host: FakeTrackingHost,
                                                      redis_server: RedisServer) -> None:
    """Two processes' worth of apps, one Redis: a limit of 4 a minute admits 4 in all, not 8."""
    storage = f"{redis_server.url.rsplit('/', 1)[0]}/3"
    first, second = (make_site("hybrid", CDP_RATE_LIMIT_STORAGE_URI=storage, CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=4)
                     for _ in range(2))
    _flush(storage)
    statuses = [post_event(consenting_client(app, rsa=str(uuid.uuid4())), VISIT).status_code
                for app in (first, second) * 4]
    assert statuses.count(204) == 4 and statuses.count(429) == 4, statuses


def test_a_refusal_says_when_to_come_back_and_is_counted(make_site, host: FakeTrackingHost) -> None:
    app = make_site("hybrid", CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=1)
    before = RATE_LIMITED.labels("track")._value.get()
    assert post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code == 204
    refused = post_event(consenting_client(app, rsa=VISITOR), VISIT)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert RATE_LIMITED.labels("track")._value.get() == before + 1


def test_the_hosts_own_limiter_keeps_the_counts(tmp_path, host: FakeTrackingHost, make_site) -> None:
    """A host with a Limiter (made before cdp.init_app): cdp_bridge uses it, not one of its own."""
    app = Flask("host_with_limiter", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/own.sqlite3",
                      CDP_ACCOUNT_NUMBER="123456", CDP_CONSENT_COOKIE="consent", CDP_TRACKING_MODE="hybrid",
                      CDP_SERVER_TRACKING_URL=host.url, CDP_INLINE_WORKER=False, CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=2)
    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://")
    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
    try:
        assert app.extensions["cdp"].rate_limits.limiter is limiter
        assert app.extensions["limiter"] == {limiter}  # no second Limiter on the host's app
        statuses = [post_event(consenting_client(app, rsa=str(uuid.uuid4())), VISIT).status_code for _ in range(3)]
        assert statuses == [204, 204, 429]
        limiter.reset()  # the host's storage holds the count: clearing it lifts the limit
        assert post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code == 204
    finally:
        app.extensions["cdp"].tracking.sender.stop()


def test_a_host_limiter_turned_off_turns_the_limits_off(tmp_path, host: FakeTrackingHost) -> None:
    app = Flask("host_limiter_off", instance_path=str(tmp_path / "instance"))
    app.config.update(TESTING=True, SECRET_KEY="x", SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/off.sqlite3",
                      CDP_ACCOUNT_NUMBER="123456", CDP_CONSENT_COOKIE="consent", CDP_TRACKING_MODE="hybrid",
                      CDP_SERVER_TRACKING_URL=host.url, CDP_INLINE_WORKER=False, CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=1,
                      RATELIMIT_ENABLED=False)
    Limiter(get_remote_address, app=app, storage_uri="memory://")
    cdp = CDP(app)
    with app.app_context():
        cdp.create_tables()
    try:
        statuses = [post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code for _ in range(3)]
        assert statuses == [204, 204, 204]
    finally:
        app.extensions["cdp"].tracking.sender.stop()


def test_redis_stopping_fails_no_event_and_warns_once(make_site, host: FakeTrackingHost, own_redis: RedisServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A Redis of its own, stopped mid-run: posts are admitted unlimited with one WARNING for
    the whole outage, and the limits hold again (one INFO line) once it is back."""
    redis = own_redis
    app = make_site("hybrid", CDP_RATE_LIMIT_STORAGE_URI=redis.url, CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=2,
                    CDP_REDIS_PAUSE_SECONDS=1)
    assert [post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code for _ in range(3)] == [204, 204, 429]
    redis.stop()
    with caplog.at_level(logging.INFO, logger="cdp_bridge.redis"):
        during = [post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code for _ in range(5)]
        redis.start()
        # The breaker skips Redis until its pause ends; then the first post tries it, and it answers.
        wait_until(lambda: any(r.levelname == "INFO" for r in caplog.records if r.name == "cdp_bridge.redis")
                   or post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code == 429, "Redis used again")
        after = [post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code for _ in range(3)]
    assert during == [204] * 5
    assert 429 in after  # a fresh Redis: a fresh count, and the limit holds again
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "cdp_bridge.redis"]
    assert [level for level, _ in lines] == ["WARNING", "INFO"], lines
    assert "failed (ConnectionError)" in lines[0][1]


@pytest.mark.parametrize("uri", ["ftp://example.org/", "redis ://x", "async+redis://localhost", "memory"])
def test_a_bad_storage_uri_is_refused_naming_the_setting(tmp_path, uri: str) -> None:
    app = Flask("bad_storage", instance_path=str(tmp_path / "instance"))
    app.config.update(CDP_RATE_LIMIT_STORAGE_URI=uri)
    with pytest.raises(ConfigurationError, match="CDP_RATE_LIMIT_STORAGE_URI: expected a rate-limit storage URI"):
        CDP(app)


def test_a_storage_that_cannot_be_made_names_the_setting_never_the_password(tmp_path) -> None:
    """memcached:// needs pymemcache, not installed here: refused at start, the URI not quoted."""
    app = Flask("memcached_storage", instance_path=str(tmp_path / "instance"))
    app.config.update(CDP_RATE_LIMIT_STORAGE_URI="memcached://user:hunter2-rate-password@127.0.0.1:11211")
    with pytest.raises(ConfigurationError) as raised:
        CDP(app)
    assert "CDP_RATE_LIMIT_STORAGE_URI" in str(raised.value) and "hunter2" not in str(raised.value)


def test_redis_down_at_start_still_starts_the_app(make_site, host: FakeTrackingHost) -> None:
    """Nothing listens on port 1: the app starts, and events are admitted (limits skipped)."""
    app = make_site("hybrid", CDP_RATE_LIMIT_STORAGE_URI=REDIS_PASSWORD_URL, CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=1)
    assert [post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code for _ in range(2)] == [204, 204]


def _flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def test_cdp_bridges_own_limiter_stays_off_the_hosts_requests(make_site, host: FakeTrackingHost) -> None:
    """No Limiter of the host's: cdp_bridge's own is not registered on the app, adds no hook
    to the site's requests, and takes none of the host's RATELIMIT_* settings as its own."""
    app = make_site("hybrid", RATELIMIT_DEFAULT="1/minute", CDP_TRACK_ADDRESS_LIMIT_PER_MINUTE=2)
    assert "limiter" not in app.extensions
    assert [app.test_client().get("/product").status_code for _ in range(3)] == [200, 200, 200]
    assert [post_event(consenting_client(app, rsa=VISITOR), VISIT).status_code for _ in range(3)] == [204, 204, 429]
