"""CDP_CACHE_URL: the visitor-segments cache shared by every process and host through a real
Redis server (Debian's redis-server, started by the tests), against the local fake of
Raptor's CDP API. Redis down never fails a page."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, render_template_string

from cdp_bridge import CDP, ConfigurationError
from tests.support.fake_membership_api import FakeMembershipAPI, Reply
from tests.support.logs import KNOWN_SECRETS
from tests.support.polling import wait_until
from tests.support.redis_server import RedisServer

VISITOR = "0b6f7c2e-5a3d-4e1f-9c8b-7a6d5e4f3a2b"
API_KEY = "shared-cache-key-secret-0c1d"
KNOWN_SECRETS.add(API_KEY)
CATS = Reply.memberships(("5d822e81", "Cat owners"))


@pytest.fixture
def api() -> Iterator[FakeMembershipAPI]:
    fake = FakeMembershipAPI(replies={VISITOR: CATS})
    yield fake
    fake.close()


def site(tmp_path: Path, api: FakeMembershipAPI, name: str, cdp: CDP | None = None, **config: object) -> Flask:
    app = Flask(name, instance_path=str(tmp_path / name))
    app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/{name}.sqlite3", CDP_INLINE_WORKER=False,
                      CDP_CONSENT_COOKIE="consent", CDP_MEMBERSHIP_API_URL=api.url, CDP_MEMBERSHIP_ACTIVATION_ID="act-shared",
                      CDP_MEMBERSHIP_API_KEY=API_KEY, CDP_MEMBERSHIP_TIMEOUT=1)
    app.config.update(config)
    (cdp or CDP()).init_app(app)

    @app.get("/page")
    def page() -> str:
        return render_template_string("{{ cdp_in_segment('Cat owners') }}")

    return app


def visit(app: Flask, visitor: str = VISITOR) -> str:
    client = app.test_client()
    client.set_cookie("rsa", visitor)
    client.set_cookie("consent", "1")
    response = client.get("/page")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_two_hosts_share_one_answer_through_redis(tmp_path: Path, api: FakeMembershipAPI, redis_server: RedisServer) -> None:
    """Two apps (two gunicorn workers or hosts) with the same CDP_CACHE_URL: a visitor seen
    by both costs one call to the CDP API."""
    first = site(tmp_path, api, "host_a", CDP_CACHE_URL=redis_server.url)
    second = site(tmp_path, api, "host_b", CDP_CACHE_URL=redis_server.url)
    assert visit(first) == "True" and visit(second) == "True" and visit(first) == "True"
    assert api.calls_for(VISITOR) == 1


def test_without_the_setting_each_process_asks_for_itself(tmp_path: Path, api: FakeMembershipAPI) -> None:
    assert visit(site(tmp_path, api, "alone_a")) == "True" and visit(site(tmp_path, api, "alone_b")) == "True"
    assert api.calls_for(VISITOR) == 2


def test_redis_down_fails_no_page_and_warns_once(tmp_path: Path, api: FakeMembershipAPI, redis_server: RedisServer,
                                                 caplog) -> None:
    app = site(tmp_path, api, "outage", CDP_CACHE_URL=redis_server.url, CDP_REDIS_PAUSE_SECONDS=1)
    other = "1c7a8d3f-6b4e-4f2a-8d9c-8b7e6f5a4b3c"
    api.replies[other] = CATS
    assert visit(app) == "True"
    redis_server.stop()
    try:
        with caplog.at_level(logging.INFO, logger="cdp_bridge.redis"):
            for _ in range(3):
                assert visit(app, other) == "True"  # from the API: the cache misses, the page renders
            warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1 and "Redis: the shared cache or rate-limit storage failed (ConnectionError)" in warnings[0]
            assert api.calls_for(other) == 3
    finally:
        redis_server.start()
    with caplog.at_level(logging.INFO, logger="cdp_bridge.redis"):
        # Once the breaker's pause ends, one call tries Redis again, and it answers.
        wait_until(lambda: visit(app, other) == "True" and "storage answers again" in caplog.text, "Redis used again")
    assert "Redis: the shared cache or rate-limit storage answers again" in caplog.text


def test_the_hosts_own_cache_wins(tmp_path: Path, api: FakeMembershipAPI, redis_server: RedisServer) -> None:
    from cachelib import SimpleCache

    own = SimpleCache()
    cdp = CDP()
    cdp.visitor_segments_cache(own)
    app = site(tmp_path, api, "own_cache", cdp=cdp, CDP_CACHE_URL=redis_server.url)
    assert visit(app) == "True"
    assert own.get(f"cdp_bridge:visitor_segments:{api.url}/api/v3/memberships/coid:act-shared:{VISITOR}") is not None


@pytest.mark.parametrize("value", ["http://localhost:6379", "redis://", "redis://localhost:99999/0", "localhost:6379", "redis://a b"])
def test_a_bad_cache_url_is_refused_naming_the_setting(tmp_path: Path, api: FakeMembershipAPI, value: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape("CDP_CACHE_URL: expected a Redis URL such as redis://localhost:6379/0")):
        site(tmp_path, api, "bad_url", CDP_CACHE_URL=value)
