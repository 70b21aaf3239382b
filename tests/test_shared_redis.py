"""The shared Redis as an attacker and an outage see it (issue 36): a value cdp_bridge did
not write, under one of its keys, is a miss (never code run, never a 500); two sites
sharing one Redis get their own answers; a hung Redis costs one timeout per breaker
pause, not one per request. A real Redis (Debian's redis-server), the fakes of Raptor's
CDP and Recommendations APIs on loopback."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, render_template_string

from cdp_bridge import CDP
from cdp_bridge.metrics import REGISTRY
from tests.support.fake_membership_api import FakeMembershipAPI
from tests.support.fake_membership_api import Reply as MembershipReply
from tests.support.fake_recommendations_api import FakeRecommendationsAPI, recommended
from tests.support.logs import KNOWN_SECRETS
from tests.support.redis_server import RedisServer

VISITOR = "0b6f7c2e-5a3d-4e1f-9c8b-7a6d5e4f3a2b"
MEMBERSHIP_KEY = "shared-redis-membership-key-7c1d"
RECOMMENDATIONS_KEY = "shared-redis-recs-key-2e9a"
KNOWN_SECRETS.update({MEMBERSHIP_KEY, RECOMMENDATIONS_KEY})
MODULES = {"for_you": {"method": "GetUserItemRecommendationsWeb", "kind": "product", "count": 3,
                       "parameters": {"UserIdentifier": "visitor"}}}
PRODUCTS = {f"sku-{n}": f"Product {n}" for n in range(1, 10)}
PAGE = ("{{ cdp_in_segment('Cat owners') }}|"
        "{% for p in cdp_recommendations('for_you') %}{{ p.name }};{% else %}best sellers{% endfor %}")


class RunsACommand:
    """A pickle that runs ``touch`` when unpickled: what an attacker with write access to
    the shared Redis would plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(autouse=True)
def empty_redis(redis_server: RedisServer) -> None:
    """Each test starts from an empty Redis: what an earlier one planted is gone."""
    redis.Redis.from_url(redis_server.url).flushdb()


@pytest.fixture
def membership_api() -> Iterator[FakeMembershipAPI]:
    fake = FakeMembershipAPI(replies={VISITOR: MembershipReply.memberships(("5d822e81", "Cat owners"))})
    yield fake
    fake.close()


@pytest.fixture
def recommendations_api() -> Iterator[FakeRecommendationsAPI]:
    fake = FakeRecommendationsAPI()
    yield fake
    fake.close()


def shop(tmp_path: Path, name: str, membership_api: FakeMembershipAPI, recommendations_api: FakeRecommendationsAPI,
         **config: Any) -> Flask:
    app = Flask(name, instance_path=str(tmp_path / name))
    app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/{name}.sqlite3", CDP_INLINE_WORKER=False,
                      CDP_CONSENT_COOKIE="consent", CDP_ACCOUNT_NUMBER="1111",
                      CDP_MEMBERSHIP_API_URL=membership_api.url, CDP_MEMBERSHIP_ACTIVATION_ID="act-1",
                      CDP_MEMBERSHIP_API_KEY=MEMBERSHIP_KEY, CDP_MEMBERSHIP_TIMEOUT=2,
                      CDP_RECOMMENDATIONS_API_URL=recommendations_api.url, CDP_RECOMMENDATIONS_API_KEY=RECOMMENDATIONS_KEY,
                      CDP_RECOMMENDATIONS_TIMEOUT=2, CDP_RECOMMENDATION_MODULES=json.dumps(MODULES))
    app.config.update(config)
    cdp = CDP(app)

    @cdp.recommendation_loader("product")
    def products(ids: list[str]) -> dict[str, Any]:
        return {item_id: {"id": item_id, "name": PRODUCTS[item_id]} for item_id in ids if item_id in PRODUCTS}

    @app.get("/")
    def page() -> str:
        return render_template_string(PAGE)

    return app


def get_page(app: Flask, *, cookie: bool = True) -> tuple[int, str]:
    client = app.test_client()
    if cookie:
        client.set_cookie("consent", "1")
        client.set_cookie("rsa", VISITOR)
    response = client.get("/")
    return response.status_code, response.get_data(as_text=True)


def cdp_keys(server: RedisServer) -> list[bytes]:
    return sorted(redis.Redis.from_url(server.url).keys("cdp_bridge:*"))


def plant(server: RedisServer, value: bytes) -> None:
    """Overwrite every value cdp_bridge keeps in Redis with ``value``."""
    client = redis.Redis.from_url(server.url)
    for key in client.keys("cdp_bridge:*"):
        client.set(key, value)


def planted_values(marker: Path) -> dict[str, bytes]:
    return {
        "a pickle that runs a command": b"!" + pickle.dumps(RunsACommand(marker)),
        "a pickled list of a number": b"!" + pickle.dumps([1]),
        "a pickled number": b"!" + pickle.dumps(12),
        "JSON of another shape": b'{"v": 1, "value": [[1, 2, 3]]}',
        "ids with a control character": b'{"v": 1, "value": ["sku-1\\u0000x"]}',
        "an older format": b'{"v": 0, "value": []}',
        "a truncated value": b'{"v": 1, "value": [["5d8',
        "bytes that are no text": b"\xff\xfe\x00\x81",
    }


@pytest.mark.parametrize("kind", list(planted_values(Path("/x"))))
def test_a_value_cdp_bridge_did_not_write_is_a_miss_never_code_or_a_500(
        kind: str, tmp_path: Path, redis_server: RedisServer, membership_api: FakeMembershipAPI,
        recommendations_api: FakeRecommendationsAPI, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "the-planted-command-ran"
    app = shop(tmp_path, f"planted_{abs(hash(kind))}", membership_api, recommendations_api, CDP_CACHE_URL=redis_server.url)
    assert get_page(app) == (200, "True|Product 1;Product 2;Product 3;")
    assert len(cdp_keys(redis_server)) == 2  # the visitor's segments and the block's recommendations
    plant(redis_server, planted_values(marker)[kind])
    with caplog.at_level(logging.WARNING, logger="cdp_bridge.cache"):
        assert get_page(app) == (200, "True|Product 1;Product 2;Product 3;")  # asked again, as on a miss
        assert get_page(app) == (200, "True|Product 1;Product 2;Product 3;")  # and the answer was written back
    assert not marker.exists()
    assert membership_api.calls_for(VISITOR) == 2 and len(recommendations_api.asked) == 2
    warnings = [record.getMessage() for record in caplog.records if record.name == "cdp_bridge.cache"]
    assert len(warnings) == 1 and "is not one it wrote" in warnings[0]  # one line for the episode
    client = redis.Redis.from_url(redis_server.url)
    assert all(json.loads(client.get(key))["v"] == 1 for key in cdp_keys(redis_server))  # overwritten


def test_no_pickle_is_ever_read_from_the_shared_cache(tmp_path: Path, redis_server: RedisServer,
                                                     membership_api: FakeMembershipAPI,
                                                     recommendations_api: FakeRecommendationsAPI) -> None:
    """What cdp_bridge writes is JSON text, so nothing it reads is ever unpickled."""
    app = shop(tmp_path, "json_only", membership_api, recommendations_api, CDP_CACHE_URL=redis_server.url)
    assert get_page(app)[0] == 200
    client = redis.Redis.from_url(redis_server.url)
    values = {key.split(b":")[2].decode(): json.loads(client.get(key))["value"] for key in cdp_keys(redis_server)}
    assert values == {"recommended_ids": ["sku-1", "sku-2", "sku-3"],
                      "visitor_segments": [{"id": "5d822e81", "name": "Cat owners"}]}


def test_two_accounts_on_one_redis_get_their_own_recommendations(tmp_path: Path, redis_server: RedisServer,
                                                                 membership_api: FakeMembershipAPI,
                                                                 recommendations_api: FakeRecommendationsAPI) -> None:
    recommendations_api.by_account = {"1111": recommended("sku-1", "sku-2"), "2222": recommended("sku-7", "sku-8")}
    first = shop(tmp_path, "account_1111", membership_api, recommendations_api, CDP_CACHE_URL=redis_server.url)
    second = shop(tmp_path, "account_2222", membership_api, recommendations_api, CDP_CACHE_URL=redis_server.url,
                  CDP_ACCOUNT_NUMBER="2222")
    assert get_page(first)[1].endswith("|Product 1;Product 2;")
    assert get_page(second)[1].endswith("|Product 7;Product 8;")
    assert get_page(first)[1].endswith("|Product 1;Product 2;")  # each from the cache now
    assert sorted(asked.account for asked in recommendations_api.asked) == ["1111", "2222"]


def test_two_api_urls_on_one_redis_get_their_own_recommendations(tmp_path: Path, redis_server: RedisServer,
                                                                 membership_api: FakeMembershipAPI,
                                                                 recommendations_api: FakeRecommendationsAPI) -> None:
    other_api = FakeRecommendationsAPI(default=recommended("sku-5"))
    try:
        first = shop(tmp_path, "url_a", membership_api, recommendations_api, CDP_CACHE_URL=redis_server.url)
        second = shop(tmp_path, "url_b", membership_api, other_api, CDP_CACHE_URL=redis_server.url)
        assert get_page(first)[1].endswith("|Product 1;Product 2;Product 3;")
        assert get_page(second)[1].endswith("|Product 5;")
    finally:
        other_api.close()


def breaker_open() -> float | None:
    return REGISTRY.get_sample_value("cdp_breaker_open", {"client": "redis"})


def test_a_hung_redis_costs_one_timeout_per_pause_not_one_per_request(
        tmp_path: Path, own_redis: RedisServer, membership_api: FakeMembershipAPI,
        recommendations_api: FakeRecommendationsAPI, caplog: pytest.LogCaptureFixture) -> None:
    """Redis SIGSTOPped: the first page waits one 0.25 s timeout, then the breaker skips
    Redis (the cache misses, the limits are skipped) for CDP_REDIS_PAUSE_SECONDS; the
    pages meanwhile ask the APIs directly. Timings are printed, never asserted."""
    app = shop(tmp_path, "hung", membership_api, recommendations_api, CDP_CACHE_URL=own_redis.url,
               CDP_RATE_LIMIT_STORAGE_URI=own_redis.url, CDP_REDIS_PAUSE_SECONDS=60)
    assert get_page(app)[0] == 200
    guard = app.extensions["cdp"].redis_guard
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        with caplog.at_level(logging.INFO, logger="cdp_bridge.redis"):
            timings = []
            for _ in range(20):
                started = time.perf_counter()
                assert get_page(app) == (200, "True|Product 1;Product 2;Product 3;")
                timings.append(time.perf_counter() - started)
        assert guard.breaker.failures == 1  # one call waited for Redis; the other pages skipped it
        assert breaker_open() == 1
        warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
        assert warnings == ["Redis: the shared cache or rate-limit storage failed (TimeoutError); caches miss and rate"
                            " limits are skipped until it answers again (one line per episode)"]
        print(f"\npages with Redis stopped: first {timings[0] * 1000:.0f} ms, then at most"
              f" {max(timings[1:]) * 1000:.1f} ms (median {sorted(timings[1:])[9] * 1000:.1f} ms)")
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
